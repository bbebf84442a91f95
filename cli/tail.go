package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
)

const eventsTailUsage = `Usage: statusbridge events tail [--json]

Prints events as they are stored and delivery results as they are recorded,
from the running server (its admin API, STATUSBRIDGE_ADMIN_TOKEN), until
Ctrl-C. The server polls its store about once a second, so with several
replicas sharing a store every replica's events and deliveries show.

`

const deliveriesTailUsage = `Usage: statusbridge deliveries tail [--json]

Prints delivery results (each attempt, state change and retry time) as they
are recorded, from the running server, until Ctrl-C. See events tail.

`

// tail streams path of the server's admin API and prints what comes.
func tail(args []string, env Env, name, usage, path string) int {
	fs := flags(name, usage, env)
	cfgPath, server := common(fs)
	asJSON := fs.Bool("json", false, "print each item as one line of JSON")
	if code, done := parse(fs, args); done {
		return code
	}
	cfg, err := loadConfig(*cfgPath, env, false)
	if err != nil {
		return fail(env, err)
	}
	srv, explicit := serverURL(cfg, *server)
	token, _ := env.Getenv("STATUSBRIDGE_ADMIN_TOKEN")
	h := &httpBackend{base: strings.TrimRight(srv, "/"), token: token, client: &http.Client{}} // no timeout: a stream lasts
	if !explicit && !h.answers() {
		return fail(env, fmt.Errorf("%s needs the running server: none answers at %s (the store file has nothing new to tell)", name, srv))
	}
	ctx := env.Ctx
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	h.connected = func() { fmt.Fprintf(env.Stderr, "statusbridge: tailing %s (Ctrl-C to stop)\n", h.base) }
	err = h.stream(ctx, path, func(kind string, data []byte) {
		if *asJSON {
			fmt.Fprintf(env.Stdout, "{\"%s\":%s}\n", kind, data)
			return
		}
		printTailItem(env.Stdout, kind, data)
	})
	if ctx.Err() != nil {
		return exitOK // Ctrl-C
	}
	if err == nil {
		err = errors.New("the server ended the stream (it is shutting down)")
	}
	return fail(env, err)
}

// stream reads the server-sent events of path until ctx ends or the server
// closes the stream.
func (h *httpBackend) stream(ctx context.Context, path string, fn func(kind string, data []byte)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("server %s: %w", h.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return h.statusError(resp, raw)
	}
	if h.connected != nil {
		h.connected()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	kind := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			kind = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			fn(kind, []byte(strings.TrimPrefix(line, "data: ")))
		case line == "":
			kind = ""
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("server %s: stream: %w", h.base, err)
	}
	return nil
}

// printTailItem writes one line per stored event or delivery result.
func printTailItem(w io.Writer, kind string, data []byte) {
	switch kind {
	case "event":
		var r bridge.EventSummary
		if json.Unmarshal(data, &r) != nil {
			return
		}
		status := r.StatusName
		if status == "" {
			status = r.StatusID
		}
		fmt.Fprintf(w, "%s  event     %s  %s  ticket %s  order %s  %s  %s  %s\n", r.ReceivedAt.UTC().Format(digishare.TimeLayout),
			shortOr(r.ShortID, r.ID), r.Event, dash(r.TicketID), dash(r.OrderID), dash(status), r.State, counts(r.Deliveries))
	case "delivery":
		var d bridge.Delivery
		if json.Unmarshal(data, &d) != nil {
			return
		}
		what := fmt.Sprintf("%q", d.Status)
		if k := d.KindOrStatus(); k != bridge.KindStatus {
			what = string(k)
		}
		line := fmt.Sprintf("%s  delivery  %s  order %s  %s  %s  %s", d.UpdatedAt.UTC().Format(digishare.TimeLayout),
			shortOr(d.ShortID, d.ID), d.OrderID, d.Target, what, d.State)
		if n := len(d.Attempts); n > 0 {
			a := d.Attempts[n-1]
			line += fmt.Sprintf("  attempt %d HTTP %d %v", n, a.StatusCode, a.Duration.Round(time.Millisecond))
			if a.Error != "" {
				line += "  " + a.Error
			}
		}
		if note := deliveryNote(&d); note != "-" {
			line += "  (" + note + ")"
		}
		fmt.Fprintln(w, line)
	}
}
