package postgres

import (
	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/receiver"
)

// The console and the live tail work on PostgreSQL as on bbolt (main.go
// takes them from the backend when it has them). In a test: the package
// itself does not import the HTTP layers.
var (
	_ admin.ConsoleStore = (*DB)(nil)
	_ receiver.Feed      = (*DB)(nil)
)
