package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
)

const ordersUsage = `Usage:
  statusbridge orders push ORDER_ID...       fetch each order from the order system and take it in
  statusbridge orders import FILE.jsonl      take in one order per line
  statusbridge orders list [--order ID] [--since T] [--until T] [--limit N] [--json]
  statusbridge orders show ID [--json]

push and import post to the running server's admin API (POST /admin/intake,
token from STATUSBRIDGE_ADMIN_TOKEN): its worker fetches, uploads, creates
the ticket and registers the order, so they never open the store file. list
and show ask the server, or read the store file when none answers.
Run "statusbridge orders push --help" (or import, list, show) for a command's flags.

`

const ordersPushUsage = `Usage: statusbridge orders push ORDER_ID... [--server URL]

Takes each order in by its id, as the body {"orderId": ID} on the intake: the
running server fetches it from the order system (GET {targets.order_system.
base_url}/_ah/api/esb/v2/order/{orderId}, a delivery like any other) and
takes the fetched document in, which is compared with the order's latest
intake. Prints each order's intake id; exits 1 when any was refused.

`

const ordersImportUsage = `Usage: statusbridge orders import FILE.jsonl [--server URL]

Takes in one order per line of FILE (the order system's document, or
{"orderId": …} alone): each line is posted to the running server's intake
(POST /admin/intake) and a bad line never stops the rest. Blank lines are
skipped. On a terminal a progress bar shows on stderr. Ends with a summary
(taken: new and updated, duplicate, refused) and the reason of each refused
line. Exits 0 when every line was taken or a duplicate, 1 when any line was
refused.

`

const ordersListUsage = `Usage: statusbridge orders list [--order ID] [--since T] [--until T] [--limit N] [--json]

Lists orders taken in, by their newest intake, newest first: the intake,
how many the order had, its ticket and the state of its ticket and
ExpertSender order deliveries. Times are RFC 3339 or "YYYY-MM-DD HH:MM:SS"
(UTC).

`

const ordersShowUsage = `Usage: statusbridge orders show ID [--json]

Shows one order: its intakes, its ticket (id, number, media id), the last
status decided per target and, on one timeline, every intake, event,
delivery and attempt for it across targets.

`

// Orders runs "orders push", "orders import", "orders list" and "orders show".
func Orders(args []string, env Env) int {
	if code, done := subcommand(args, ordersUsage, env, "push", "import", "list", "show"); done {
		return code
	}
	switch args[0] {
	case "push":
		return ordersPush(args[1:], env)
	case "import":
		return ordersImport(args[1:], env)
	case "show":
		return ordersShow(args[1:], env)
	}
	return ordersList(args[1:], env)
}

// positional splits leading positional arguments from flags.
func positional(args []string) (pos, rest []string) {
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	return pos, args
}

// intakeServer connects to the running server; without one it fails: the
// worker that fetches and sends is the server's.
func intakeServer(env Env, cfgPath, server, cmd string) (*httpBackend, int) {
	cfg, err := loadConfig(cfgPath, env, false)
	if err != nil {
		return nil, fail(env, err)
	}
	srv, _ := serverURL(cfg, server)
	token, _ := env.Getenv("STATUSBRIDGE_ADMIN_TOKEN")
	hb := &httpBackend{base: strings.TrimRight(srv, "/"), token: token, client: &http.Client{Timeout: time.Minute}}
	if !hb.answers() { // explicit or not: never the file
		return nil, fail(env, fmt.Errorf("no statusbridge server answers at %s: %s needs the running server (its worker fetches the orders, "+
			"uploads the invoices, creates the tickets and registers the orders); start it, or give --server", srv, cmd))
	}
	return hb, exitOK
}

// intakeError is a refused intake: the server's status code and reason.
type intakeError struct {
	code int
	msg  string
}

func (e *intakeError) Error() string { return e.msg }

// intakeAnswer is the server's answer to an intake.
type intakeAnswer struct {
	OrderID   string `json:"order_id"`
	IntakeID  string `json:"intake_id"`
	Duplicate bool   `json:"duplicate"`
	State     string `json:"state"`
}

// intakeRetries bounds the tries of an intake the server answers 503 (its
// store is busy or cannot commit now).
const intakeRetries = 5

// intake posts one body to POST /admin/intake. A 503 is tried again after
// its Retry-After (at most intakeRetries times, ctx permitting); a refusal
// (400, 413, 422) is an *intakeError with the server's reason.
func (h *httpBackend) intake(ctx context.Context, body []byte) (intakeAnswer, error) {
	var ans intakeAnswer
	for try := 1; ; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+"/admin/intake", bytes.NewReader(body))
		if err != nil {
			return ans, err
		}
		req.Header.Set("Content-Type", "application/json")
		if h.token != "" {
			req.Header.Set("Authorization", "Bearer "+h.token)
		}
		resp, err := h.client.Do(req)
		if err != nil {
			return ans, fmt.Errorf("server %s: %w", h.base, err)
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			if err := json.Unmarshal(raw, &ans); err != nil {
				return ans, fmt.Errorf("server %s: unreadable answer: %w", h.base, err)
			}
			return ans, nil
		case resp.StatusCode == http.StatusServiceUnavailable && try < intakeRetries:
			wait := time.Second
			if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 && n <= 30 {
				wait = time.Duration(n) * time.Second
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ans, ctx.Err()
			case <-t.C:
			}
			continue
		case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusRequestEntityTooLarge,
			resp.StatusCode == http.StatusUnprocessableEntity, resp.StatusCode == http.StatusServiceUnavailable:
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(raw, &e)
			msg := e.Error
			if msg == "" {
				msg = http.StatusText(resp.StatusCode)
			}
			return ans, &intakeError{code: resp.StatusCode, msg: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, msg)}
		}
		return ans, h.statusError(resp, raw)
	}
}

func ordersPush(args []string, env Env) int {
	fs := flags("orders push", ordersPushUsage, env)
	cfgPath, server := common(fs)
	ids, rest := positional(args)
	if code, done := parse(fs, rest); done {
		return code
	}
	ids = append(ids, fs.Args()...)
	if len(ids) == 0 {
		fmt.Fprint(env.Stderr, "orders push needs at least one order id\n")
		return exitUsage
	}
	hb, code := intakeServer(env, *cfgPath, *server, "orders push")
	if hb == nil {
		return code
	}
	failed := 0
	for _, id := range ids {
		body, _ := json.Marshal(map[string]string{"orderId": id})
		ans, err := hb.intake(context.Background(), body)
		var ie *intakeError
		switch {
		case errors.As(err, &ie):
			failed++
			fmt.Fprintf(env.Stderr, "statusbridge: order %s refused: %s\n", id, ie.msg)
		case err != nil:
			return fail(env, err) // the server itself: the next ones would fail alike
		default:
			fmt.Fprintf(env.Stdout, "%s: intake %s (%s): the server fetches it from the order system\n", ans.OrderID, ans.IntakeID, ans.State)
		}
	}
	if failed > 0 {
		return exitFailure
	}
	return exitOK
}

// importSummary counts an import's lines.
type importSummary struct {
	New, Updated, Fetch, Duplicate int
	Refused                        []string // "line N: reason"
}

func (s importSummary) String() string {
	taken := s.New + s.Updated + s.Fetch
	return fmt.Sprintf("import: %d taken (%d new, %d updated, %d to fetch), %d duplicate, %d refused",
		taken, s.New, s.Updated, s.Fetch, s.Duplicate, len(s.Refused))
}

func ordersImport(args []string, env Env) int {
	fs := flags("orders import", ordersImportUsage, env)
	cfgPath, server := common(fs)
	files, rest := positional(args)
	if code, done := parse(fs, rest); done {
		return code
	}
	files = append(files, fs.Args()...)
	if len(files) != 1 {
		fmt.Fprint(env.Stderr, "orders import needs one FILE.jsonl (one order per line)\n")
		return exitUsage
	}
	f, err := os.Open(files[0])
	if err != nil {
		return fail(env, err)
	}
	defer f.Close()
	total, err := countLines(f)
	if err != nil {
		return fail(env, fmt.Errorf("read %s: %w", files[0], err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(env, err)
	}
	hb, code := intakeServer(env, *cfgPath, *server, "orders import")
	if hb == nil {
		return code
	}
	bar := newProgress(env.Stderr, total)
	var sum importSummary
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, rerr := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			ans, err := hb.intake(context.Background(), bytes.TrimRight(line, "\r\n"))
			var ie *intakeError
			switch {
			case errors.As(err, &ie):
				sum.Refused = append(sum.Refused, fmt.Sprintf("line %d: %s", n, ie.msg))
			case err != nil:
				bar.done()
				fmt.Fprintln(env.Stdout, sum)
				return fail(env, fmt.Errorf("line %d: %w (stopped: the server does not take intakes)", n, err))
			case ans.Duplicate:
				sum.Duplicate++
			case ans.State == string(bridge.IntakeUpdated):
				sum.Updated++
			case ans.State == string(bridge.IntakeFetch):
				sum.Fetch++
			default:
				sum.New++
			}
			bar.step(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			bar.done()
			return fail(env, fmt.Errorf("read %s: %w", files[0], rerr))
		}
	}
	bar.done()
	fmt.Fprintln(env.Stdout, sum)
	for _, r := range sum.Refused {
		fmt.Fprintln(env.Stdout, "  refused", r)
	}
	if len(sum.Refused) > 0 {
		return exitFailure
	}
	return exitOK
}

// countLines counts the lines of r (a last line without a newline counts).
func countLines(r io.Reader) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	n, any := 0, false
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			if any {
				n++
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
		any = b != '\n'
		if b == '\n' {
			n++
		}
	}
}

// progress is a progress bar, drawn only on a terminal.
type progress struct {
	w     io.Writer
	total int
	on    bool
	last  time.Time
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, total: total, on: isTerminal(w) && total > 0}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) step(line int) {
	if !p.on || (time.Since(p.last) < 100*time.Millisecond && line < p.total) {
		return
	}
	p.last = time.Now()
	const width = 30
	filled := min(width, width*line/p.total)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d lines", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), line, p.total)
}

func (p *progress) done() {
	if p.on {
		fmt.Fprintln(p.w)
		p.on = false
	}
}

func ordersList(args []string, env Env) int {
	fs := flags("orders list", ordersListUsage, env)
	cfgPath, server := common(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	order := fs.String("order", "", "only this order id")
	since := fs.String("since", "", "newest intake received at or after this time")
	until := fs.String("until", "", "newest intake received before this time")
	limit := fs.Int("limit", 50, "at most this many orders (1-1000)")
	if code, done := parse(fs, args); done {
		return code
	}
	f := bridge.IntakeFilter{OrderID: *order, Limit: *limit}
	var err error
	if f.Since, err = parseTime("--since", *since); err != nil {
		return usageError(env, "--since", err)
	}
	if f.Until, err = parseTime("--until", *until); err != nil {
		return usageError(env, "--until", err)
	}
	b, _, code := open(env, *cfgPath, *server, false)
	if b == nil {
		return code
	}
	defer b.Close()
	rows, _, err := b.Orders(f)
	if err != nil {
		return fail(env, err)
	}
	if *asJSON {
		return printJSON(env.Stdout, rows)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tLAST INTAKE\tSTATE\tSOURCE\tINTAKES\tTICKET\tTICKET STATE\tEXPERTSENDER")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.OrderID, r.LastIntake.ReceivedAt.UTC().Format(digishare.TimeLayout),
			r.LastIntake.State, r.LastIntake.Source, r.Intakes, ticketText(r.Ticket), dash(string(r.TicketState)), dash(string(r.UpsertState)))
	}
	tw.Flush()
	return exitOK
}

func ticketText(t *bridge.Ticket) string {
	if t == nil {
		return "-"
	}
	s := t.ID
	if t.Number != "" {
		s += " #" + t.Number
	}
	return dash(strings.TrimSpace(s))
}

func ordersShow(args []string, env Env) int {
	fs := flags("orders show", ordersShowUsage, env)
	cfgPath, server := common(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	ids, rest := positional(args)
	if code, done := parse(fs, rest); done {
		return code
	}
	ids = append(ids, fs.Args()...)
	if len(ids) != 1 {
		fmt.Fprint(env.Stderr, "orders show needs one order id\n")
		return exitUsage
	}
	b, _, code := open(env, *cfgPath, *server, false)
	if b == nil {
		return code
	}
	defer b.Close()
	d, err := b.Order(ids[0])
	if err != nil {
		return fail(env, err)
	}
	if *asJSON {
		return printJSON(env.Stdout, d)
	}
	printOrder(env.Stdout, d)
	return exitOK
}

func printOrder(w io.Writer, d *bridge.OrderDetail) {
	fmt.Fprintf(w, "Order %s\n", d.OrderID)
	if t := d.Ticket; t != nil {
		fmt.Fprintf(w, "  ticket    %s (external_id %s) created %s", ticketText(t), dash(t.ExternalID), t.CreatedAt.UTC().Format(time.RFC3339))
		if t.MediaID != "" {
			fmt.Fprintf(w, ", invoice media id %s", t.MediaID)
		} else if t.MediaNote != "" {
			fmt.Fprintf(w, ", %s", t.MediaNote)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "  ticket    none yet (delivery %s)\n", dash(d.TicketDeliveryID))
		if d.MediaID != "" {
			fmt.Fprintf(w, "  invoice   media id %s (uploaded)\n", d.MediaID)
		}
	}
	if len(d.Statuses) > 0 {
		fmt.Fprintln(w, "Last status per target")
		for _, t := range sortedKeys(d.Statuses) {
			fmt.Fprintf(w, "  %-16s %s (delivery %s)\n", t, d.Statuses[t].Status, d.Statuses[t].DeliveryID)
		}
	}
	fmt.Fprintf(w, "Intakes (%d)\n", len(d.Intakes))
	for _, it := range d.Intakes {
		fmt.Fprintf(w, "  %s  %s  %-7s source %s\n", it.ID, it.ReceivedAt.UTC().Format(time.RFC3339), it.State, it.Source)
	}
	fmt.Fprintln(w, "Timeline")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range d.Timeline {
		what := e.Type
		if e.Kind != "" {
			what += " " + string(e.Kind)
		}
		target := e.Target
		if e.StatusCode != 0 {
			target += " HTTP " + strconv.Itoa(e.StatusCode)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), what, shortID(e.ID), dash(target),
			dash(e.Status), dash(e.State), e.Text)
	}
	tw.Flush()
}

// shortID is the last 8 hex digits of a UUID (what listings show).
func shortID(id string) string {
	h := strings.ReplaceAll(id, "-", "")
	if len(h) == 32 {
		return h[24:]
	}
	return id
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (h *httpBackend) Orders(f bridge.IntakeFilter) ([]bridge.OrderSummary, string, error) {
	q := url.Values{}
	for k, v := range map[string]string{"order_id": f.OrderID, "cursor": f.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out struct {
		Orders     []bridge.OrderSummary `json:"orders"`
		NextCursor string                `json:"next_cursor"`
	}
	err := h.do(http.MethodGet, "/admin/orders?"+q.Encode(), nil, &out)
	return out.Orders, out.NextCursor, err
}

func (h *httpBackend) Order(id string) (*bridge.OrderDetail, error) {
	var out bridge.OrderDetail
	if err := h.do(http.MethodGet, "/admin/orders/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (f *fileBackend) Orders(flt bridge.IntakeFilter) ([]bridge.OrderSummary, string, error) {
	return f.db.Orders(context.Background(), flt)
}

func (f *fileBackend) Order(id string) (*bridge.OrderDetail, error) {
	return f.db.Order(context.Background(), id)
}
