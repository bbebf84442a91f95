package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The schema is migrated by the numbered SQL files in migrations/
// (0001_init.sql, 0002_….sql), each applied once, in its own transaction,
// and recorded in the schema's schema_version table. A file is never edited
// once released: a change is a new file.
//
// A few lines of our own rather than a migration library (goose): goose
// runs on database/sql (a second pool beside pgx's), and this still needs
// what goose does not do: the per-schema search_path, the advisory lock of
// this schema on a dedicated connection and the refusal of a schema newer
// than the binary.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in order. Their versions must
// run 1, 2, 3… without gaps.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("postgres: migration %s: name is not NNNN_name.sql", name)
		}
		body, err := migrationFiles.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migration %s: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return out, nil
}

// lockMigrate is the advisory lock class of migrations (the object is the
// schema's hash): replicas of one schema migrate one at a time.
const lockMigrate int32 = 0x5b_6d_69_67 // "[mig"

// migrate creates the schema when missing and applies the migrations it
// lacks, on a dedicated connection holding the schema's advisory lock (a
// session lock: released when the connection closes, whatever happens).
func (db *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, db.connCfg.Copy())
	if err != nil {
		return db.fail(ctx, "connect", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", lockMigrate, hash32(db.schema)); err != nil {
		return db.fail(ctx, "lock the schema for migrations", err)
	}
	schema := pgx.Identifier{db.schema}.Sanitize()
	// CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the
	// schema exists: look first, so a role that only owns the schema works.
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", db.schema).Scan(&exists); err != nil {
		return db.fail(ctx, "look for schema "+db.schema, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return db.fail(ctx, "create schema "+db.schema, err)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+schema+`.schema_version (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return db.fail(ctx, "create the schema_version table", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+schema+".schema_version").Scan(&current); err != nil {
		return db.fail(ctx, "read the schema version", err)
	}
	latest := len(ms)
	if current > latest {
		return fmt.Errorf("postgres: schema %s: the database schema is version %d, this binary knows up to %d: upgrade statusbridge",
			db.schema, current, latest)
	}
	for _, m := range ms[current:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+schema); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return db.fail(ctx, "apply migration "+m.name, err)
		}
		db.log.Info("postgres: schema migrated", "schema", db.schema, "version", m.version, "migration", m.name)
	}
	return nil
}
