package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/live"
	"github.com/statusbridge/statusbridge/mapping"
	"github.com/statusbridge/statusbridge/receiver"
)

const (
	adminTok  = "cli-admin-token-1"
	confirmed = "yqdwrbka7kz69v8e"
)

// site is a config file and its store, with (optionally) a real admin
// server in front of the store.
type site struct {
	t      *testing.T
	dir    string
	cfg    string
	store  string
	conf   *config.Config
	table  *mapping.Table
	db     *bolt.DB // open while a server runs
	server string   // its URL
	srv    *receiver.Server
}

func newSite(t *testing.T) *site {
	t.Helper()
	return newSiteTargets(t, `targets: { expertsender: { base_url: "http://127.0.0.1:9", api_key: k-123456 } }`)
}

// newSiteTargets is newSite with the given targets section.
func newSiteTargets(t *testing.T, targets string) *site {
	t.Helper()
	dir := t.TempDir()
	s := &site{t: t, dir: dir, cfg: filepath.Join(dir, "config.yaml"), store: filepath.Join(dir, "sb.db")}
	yaml := fmt.Sprintf(`listen: %s
store: { path: %q }
admin:
  token: ${STATUSBRIDGE_ADMIN_TOKEN:-}
%s
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
`, freeAddr(t), s.store, targets)
	if err := os.WriteFile(s.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	conf, err := config.Resolve(s.cfg, tokenEnv)
	if err != nil {
		t.Fatal(err)
	}
	s.conf, s.table = conf, mapping.New(conf)
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tokenEnv(k string) (string, bool) {
	if k == "STATUSBRIDGE_ADMIN_TOKEN" {
		return adminTok, true
	}
	return "", false
}

func noEnv(string) (string, bool) { return "", false }

// open opens the store (the site's own handle, as a server would).
func (s *site) open() *bolt.DB {
	s.t.Helper()
	if s.db != nil {
		return s.db
	}
	db, err := bolt.Open(s.store, bolt.Options{})
	if err != nil {
		s.t.Fatal(err)
	}
	s.db = db
	s.t.Cleanup(func() { s.close() })
	return db
}

func (s *site) close() {
	if s.db != nil {
		_ = s.db.Close()
		s.db = nil
	}
}

// ingest stores a webhook call for order with the confirmed status.
func (s *site) ingest(ticket, order, at string) bridge.IngestResult {
	s.t.Helper()
	return s.ingestRaw(fake.Update{TicketID: ticket, OrderID: order, StatusID: confirmed, DateStatus: at}.Payload())
}

// ingestRaw stores a webhook body.
func (s *site) ingestRaw(raw []byte) bridge.IngestResult {
	s.t.Helper()
	up, err := digishare.Decode(raw)
	if err != nil {
		s.t.Fatal(err)
	}
	res, err := bridge.Ingest(context.Background(), s.open(), bridge.Incoming{Raw: raw, Update: up, ReceivedAt: time.Now()}, s.table)
	if err != nil {
		s.t.Fatal(err)
	}
	return res
}

// serve starts the real admin API over the open store.
func (s *site) serve() string {
	s.t.Helper()
	db := s.open()
	srv := receiver.New(bridge.Store{Backend: db}, s.adminOptions(db))
	s.srv = srv
	hs := httptest.NewServer(srv.Handler())
	s.t.Cleanup(hs.Close)
	s.server = hs.URL
	return hs.URL
}

// adminOptions are the receiver's options of a server with the admin API
// over db and the site's mapping.
func (s *site) adminOptions(db *bolt.DB) receiver.Options {
	maps := live.New(s.conf, nil, slog.New(slog.DiscardHandler), noReloads{})
	return receiver.Options{
		WebhookPath: "/webhooks/digishare", MaxBody: 1 << 20, AdminToken: adminTok, Admin: bridge.Store{Backend: db},
		Mapping: maps.Current,
		Service: admin.New(admin.Options{Store: bridge.Store{Backend: db}, Console: db, Mapping: maps}),
		Feed:    db, StreamPoll: 20 * time.Millisecond,
	}
}

// run runs a command with the site's config, as the CLI would.
func (s *site) run(getenv func(string) (string, bool), cmd func([]string, Env) int, args ...string) (int, string, string) {
	s.t.Helper()
	var out, errb bytes.Buffer
	code := cmd(args, Env{Getenv: getenv, Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

type noReloads struct{}

func (noReloads) Reload(bool) {}
