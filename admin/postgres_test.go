package admin

import (
	"context"
	"os"
	"testing"

	"github.com/statusbridge/statusbridge/internal/pgtest"
	"github.com/statusbridge/statusbridge/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestServiceOnPostgres runs the service's tests again on the PostgreSQL
// backend: the console and the admin API work the same on either.
func TestServiceOnPostgres(t *testing.T) {
	defer func(open func(*testing.T, string) consoleBackend) { openBackend = open }(openBackend)
	openBackend = func(t *testing.T, _ string) consoleBackend {
		t.Helper()
		db, err := postgres.Open(context.Background(), postgres.Options{DSN: pgtest.NewDatabase(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"RetryRecordsTheAction", TestRetryRecordsTheAction},
		{"ReplayChecksAndRecords", TestReplayChecksAndRecords},
		{"RetryJobPreviewRunAndResume", TestRetryJobPreviewRunAndResume},
		{"OverviewFromCounters", TestOverviewFromCounters},
		{"OrderTimeline", TestOrderTimeline},
		{"PreviewMapping", TestPreviewMapping},
		{"RetryJobLeavesUnknownTicketsOut", TestRetryJobLeavesUnknownTicketsOut},
		{"OrderViewShowsIntakes", TestOrderViewShowsIntakes},
	} {
		t.Run(tc.name, tc.fn)
	}
}
