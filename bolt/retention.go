package bolt

import (
	"fmt"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// Compact rewrites the store at path into a fresh file (bbolt never shrinks
// its file) and replaces it. It must run with no server holding the file: it
// fails with ErrLocked within lockTimeout otherwise. It returns the sizes
// before and after.
func Compact(path string, lockTimeout time.Duration) (before, after int64, err error) {
	src, err := Open(path, Options{LockTimeout: lockTimeout, ReadOnly: true})
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	tmp := path + ".compact"
	_ = os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact: create %s: %w", tmp, err)
	}
	if err := bbolt.Compact(dst, src.bolt, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("store: compact: sync: %w", err)
	}
	if err := dst.Close(); err != nil {
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	nfi, err := os.Stat(tmp)
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, 0, fmt.Errorf("store: compact: replace %s: %w", path, err)
	}
	return fi.Size(), nfi.Size(), nil
}
