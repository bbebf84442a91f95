package storeopen

import (
	"context"
	"errors"
	"time"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bridge"
)

// ErrNoConsole: the store keeps no console records (counters, bulk jobs,
// operator actions). Both built-in backends keep them; a backend added
// later may not.
var ErrNoConsole = errors.New("this store does not keep bulk jobs (retry dead deliveries with statusbridge replay --dead)")

// Console returns the backend's console records, or, for a backend that
// keeps none, a stand-in: its counters are all zero (so the pages and API
// routes that show counts, the mapping's among them, still answer), it
// refuses to create jobs with ErrNoConsole and lists none (so the job
// runner idles), and it does not record operator actions (they are still
// logged).
func Console(b bridge.Backend) admin.ConsoleStore {
	if c, ok := b.(admin.ConsoleStore); ok {
		return c
	}
	return noConsole{}
}

type noConsole struct{}

var _ admin.ConsoleStore = noConsole{}

func (noConsole) Counters(context.Context, time.Time) (bridge.Counters, error) {
	return bridge.Counters{LastHour: map[bridge.EventState]int{}, LastDay: map[bridge.EventState]int{},
		Targets: map[string]bridge.TargetCounters{}, Unmapped: map[string]int{}, StatusIDs: map[string]int{}}, nil
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
