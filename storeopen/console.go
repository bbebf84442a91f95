package storeopen

import (
	"context"
	"errors"
	"time"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bridge"
)

// ErrNoConsole: the store keeps no console records (counters, bulk jobs,
// operator actions) — the PostgreSQL store, today.
var ErrNoConsole = errors.New("the console's counters and bulk jobs need the bbolt store; this store does not keep them yet")

// Console returns the backend's console records, or, for a backend that
// keeps none, a stand-in that answers ErrNoConsole for counters and jobs,
// lists no unfinished job (so the job runner idles) and does not record
// operator actions (they are still logged).
func Console(b bridge.Backend) admin.ConsoleStore {
	if c, ok := b.(admin.ConsoleStore); ok {
		return c
	}
	return noConsole{}
}

type noConsole struct{}

var _ admin.ConsoleStore = noConsole{}

func (noConsole) Counters(context.Context, time.Time) (bridge.Counters, error) {
	return bridge.Counters{}, ErrNoConsole
}
func (noConsole) CreateJob(context.Context, bridge.Job) (bridge.Job, error) {
	return bridge.Job{}, ErrNoConsole
}
func (noConsole) SaveJob(context.Context, bridge.Job) error { return ErrNoConsole }
func (noConsole) GetJob(context.Context, string) (*bridge.Job, error) {
	return nil, ErrNoConsole
}
func (noConsole) ListJobs(context.Context, int) ([]bridge.Job, error)   { return nil, nil }
func (noConsole) UnfinishedJobs(context.Context) ([]bridge.Job, error)  { return nil, nil }
func (noConsole) RecordAction(context.Context, bridge.Action) error     { return nil }
func (noConsole) Actions(context.Context, int) ([]bridge.Action, error) { return nil, nil }
