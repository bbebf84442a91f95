// Command floor measures this disk's floor for acknowledging writes durably,
// without HTTP or statusbridge's own work, for the two designs that matter:
//
//	go run ./bench/floor [-rate 1000] [-dur 15s] [-runs 2]
//
// Design "bbolt": a group committer (as statusbridge's store) takes every
// request already waiting and commits them in one bbolt transaction (two
// fdatasyncs and the page writes); a request is acknowledged when its commit
// returned.
//
// Design "wal": a group committer appends the waiting requests to a
// preallocated log file and fdatasyncs it once; a request is acknowledged
// then, and bbolt is updated behind it (its commits compete for the same
// disk, as they would).
//
// Requests arrive open loop at -rate (latency counts from the intended arrival)
// and each writes what an ingest writes most of: a ~600-byte record under a
// time-ordered key and a random 16-byte dedup key. The runs alternate, so both
// designs see the same minutes of a disk whose speed swings.
//
// It exists to answer one question with a number: how low can the p99 of an
// acknowledgement go here, before HTTP, parsing and the load generator add
// theirs? The measurement lives in bench/internal/floor, which go run ./bench
// also runs (the bbolt design) so its summary can compare with the same
// minutes.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/statusbridge/statusbridge/bench/internal/floor"
)

func main() {
	rate := flag.Int("rate", 1000, "requests per second, open loop")
	dur := flag.Duration("dur", 15*time.Second, "length of each run")
	runs := flag.Int("runs", 2, "runs of each design, alternating")
	dir := flag.String("dir", "", "directory for the temporary files (default: the system's temp directory)")
	flag.Parse()
	if *rate <= 0 || *dur <= 0 || *runs <= 0 {
		fmt.Fprintln(os.Stderr, "floor: -rate, -dur and -runs must be positive")
		os.Exit(2)
	}
	fmt.Printf("%-6s %6s %9s %9s %9s %9s  %s\n", "DESIGN", "RATE", "P50 MS", "P99 MS", "P99.9 MS", "MAX MS", "BACKGROUND BBOLT COMMIT P50/P99 MS")
	for i := 0; i < *runs; i++ {
		for _, wal := range []bool{false, true} {
			r, err := floor.Run(*dir, wal, *rate, *dur)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Println(r)
		}
	}
}
