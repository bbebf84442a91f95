package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/statusbridge/statusbridge/internal/fake"
)

// The console, driven in a real browser (headless Chromium through the
// DevTools protocol) against the real run() with a fake ExpertSender.

// consoleConfig is the admin end-to-end config with a second mapped status.
var consoleConfig = fmt.Sprintf(adminConfig, "%s", "    x9q3wrlv0m7vzea8: { name: Awaiting confirmation, expertsender: placed }\n")

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// chromiumPath finds Chromium, or skips the test (fails it under CI=true).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("Chromium is not installed (apt-get install -y chromium); under CI=true the browser tests must run")
	}
	t.Skip("browser test skipped: Chromium not found; install it with: apt-get install -y chromium")
	return ""
}

// browser starts a headless Chromium with a fresh profile, for this test only.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// step runs browser actions with a deadline and fails the test on error.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action that returns a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// js evaluates an expression in the page (awaiting a promise).
func js[T any](expr string) chromedp.Action[T] {
	return chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise)
}

// text is the text of the first element a CSS selector matches.
func text(sel string) chromedp.Action[string] { return chromedp.Text(chromedp.CSS(sel)) }

// visible waits for an element a CSS selector matches to be visible.
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// andLoad runs trigger (a click or a submit that opens a page) and waits
// for that page's load event.
func andLoad(trigger chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.WaitEvent(page.LoadEventFired, nil, trigger)(ctx, t)
		return err
	})
}

// poll waits, in the page, until expr is true.
func poll(expr string, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout))(ctx, t)
		return err
	})
}

// shots writes screenshots: into docs/ with UPDATE_SCREENSHOTS=1, else a temp dir.
type shots struct {
	t   *testing.T
	dir string
}

func newShots(t *testing.T) shots {
	if os.Getenv("UPDATE_SCREENSHOTS") == "1" {
		return shots{t, "docs"}
	}
	return shots{t, t.TempDir()}
}

func (s shots) take(ctx context.Context, name string) {
	s.t.Helper()
	buf := get(s.t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(s.dir, "console-"+name+".png"), buf, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func TestConsoleInBrowser(t *testing.T) {
	ctx := browser(t)
	var failing atomic.Bool
	es := fake.NewServer(t)
	es.Respond = func(fake.Request) fake.Answer {
		if failing.Load() {
			return fake.Answer{Code: 400, Body: `{"errors":["order status rejected"]}`}
		}
		return fake.Answer{Code: 200, Body: "{}"}
	}
	s := startServer(t, fmt.Sprintf(consoleConfig, es.URL))
	base := "http://" + s.addr
	post := func(raw []byte) string {
		t.Helper()
		resp, err := http.Post(base+"/webhooks/digishare", "application/json", bytes.NewReader(raw))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("webhook: %v %v", resp, err)
		}
		defer resp.Body.Close()
		var out struct {
			EventID string `json:"event_id"`
		}
		if err := decodeJSON(resp, &out); err != nil {
			t.Fatal(err)
		}
		return out.EventID
	}
	hook := func(u fake.Update) string { t.Helper(); return post(u.Payload()) }
	const (
		confirmed = "yqdwrbka7kz69v8e"
		awaiting  = "x9q3wrlv0m7vzea8"
	)
	// Four dead deliveries: 1001 (retried alone, which resolves it), 2001–2003
	// (retried in bulk; 2003 then gets a newer status, so its dead one must
	// stay out).
	failing.Store(true)
	single := hook(fake.Update{TicketID: "t1001", OrderID: "1001", StatusID: confirmed, DateStatus: "2026-01-13 10:00:00"})
	for _, o := range []string{"2001", "2002", "2003"} {
		hook(fake.Update{TicketID: "t" + o, OrderID: o, StatusID: confirmed, DateStatus: "2026-01-13 10:00:00"})
	}
	s.deadDeliveries(4)
	failing.Store(false)
	hook(fake.Update{TicketID: "t2003", OrderID: "2003", StatusID: awaiting, DateStatus: "2026-01-13 11:00:00"})
	hook(fake.Update{TicketID: "t3001", OrderID: "3001", StatusID: "shipped000000000", DateStatus: "2026-01-13 10:00:00"}) // unmapped
	es.WaitRequests(5, 10*time.Second)
	shot := newShots(t)

	t.Run("a logged-out visit is sent to the login page", func(t *testing.T) {
		step(t, ctx, "visit", chromedp.Navigate(base+"/"), visible("#token"))
		if loc := get(t, ctx, "location", chromedp.Location()); !strings.HasPrefix(loc, base+"/ui/login") {
			t.Errorf("landed on %s", loc)
		}
		step(t, ctx, "visit events", chromedp.Navigate(base+"/ui/events?state=dispatched"), visible("#token"))
		if loc := get(t, ctx, "location", chromedp.Location()); !strings.Contains(loc, "/ui/login?next=") {
			t.Errorf("landed on %s", loc)
		}
		shot.take(ctx, "login")
	})

	t.Run("log in: a wrong token is refused", func(t *testing.T) {
		step(t, ctx, "wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-the-token"), andLoad(chromedp.Submit(chromedp.ID("token"))), visible(".problem"))
		if msg := get(t, ctx, "message", text(".problem")); !strings.Contains(msg, "not the admin token") {
			t.Errorf("message = %q", msg)
		}
		step(t, ctx, "right token", chromedp.SendKeys(chromedp.ID("token"), adminTok), andLoad(chromedp.Submit(chromedp.ID("token"))), visible("table.events"))
		if loc := get(t, ctx, "location", chromedp.Location()); loc != base+"/ui/events?state=dispatched" {
			t.Errorf("after login: %s, want the page asked for", loc)
		}
		if cookies := get(t, ctx, "cookies", js[string]("document.cookie")); strings.Contains(cookies, "sb_session") {
			t.Error("the session cookie is readable by scripts (not HttpOnly)")
		}
	})

	rows := func(t *testing.T) []string {
		return get(t, ctx, "rows", js[[]string](`[...document.querySelectorAll("table.events tbody tr")].map(r => r.innerText)`))
	}
	t.Run("filter events by order and by state", func(t *testing.T) {
		step(t, ctx, "by order", chromedp.Navigate(base+"/ui/events"), visible("#f-order"),
			chromedp.SendKeys(chromedp.ID("f-order"), "2003"), andLoad(chromedp.Submit(chromedp.ID("f-order"))),
			visible("footer.foot"))
		got := rows(t)
		if len(got) != 2 {
			t.Errorf("order 2003: %q", got)
		}
		for _, r := range got {
			if !strings.Contains(r, "2003") {
				t.Errorf("row of another order: %q", r)
			}
		}
		step(t, ctx, "by state", chromedp.Navigate(base+"/ui/events"), visible("#f-state"),
			chromedp.SetValue(chromedp.ID("f-state"), "unmapped"), andLoad(chromedp.Submit(chromedp.ID("f-state"))),
			visible("footer.foot"))
		if got := rows(t); len(got) != 1 || !strings.Contains(got[0], "3001") || !strings.Contains(got[0], "unmapped") {
			t.Errorf("unmapped: %q", got)
		}
		step(t, ctx, "all", chromedp.Navigate(base+"/ui/events"), visible("table.events"))
		shot.take(ctx, "events")
	})

	t.Run("open an event and see its attempts", func(t *testing.T) {
		step(t, ctx, "open", chromedp.Navigate(base+"/ui/events?order_id=1001"), visible("table.events a.id"),
			andLoad(chromedp.Click(chromedp.CSS("table.events a.id"))), visible("table.attempts"))
		if a := get(t, ctx, "attempt", text("table.attempts tbody tr")); !strings.Contains(a, "400") || !strings.Contains(a, "order status rejected") {
			t.Errorf("attempt row = %q", a)
		}
		if title := get(t, ctx, "local time", js[string](`document.querySelector("time").title`)); !strings.HasPrefix(title, "Your local time") {
			t.Errorf("time title = %q", title)
		}
		shot.take(ctx, "event")
	})

	t.Run("retry a dead delivery and see it done", func(t *testing.T) {
		before := len(es.Requests())
		step(t, ctx, "retry", chromedp.Navigate(base+"/ui/events/"+single), visible(".delivery button.primary"),
			andLoad(chromedp.Click(chromedp.CSS(".delivery button.primary"))), visible(".flash"))
		if reqs := es.WaitRequests(before+1, 10*time.Second); len(reqs) != before+1 || reqs[before].OrderID != "1001" || reqs[before].Status != "paid" {
			t.Fatalf("ExpertSender after the retry: %+v", reqs[before:])
		}
		// The attempt is recorded just after the fake answered: reload until the page shows it.
		var states string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && states != "dead,done"; {
			step(t, ctx, "reload", chromedp.Navigate(base+"/ui/events/"+single), visible(".delivery"))
			states = get(t, ctx, "states", js[string](`[...document.querySelectorAll(".delivery h3 .state")].map(e => e.textContent).join()`))
		}
		if states != "dead,done" {
			t.Errorf("delivery states on the event page: %s, want the dead one and its done retry", states)
		}
	})

	t.Run("the order timeline", func(t *testing.T) {
		step(t, ctx, "order", chromedp.Navigate(base+"/ui/order?id=2003"), visible("ol.timeline"))
		if told := get(t, ctx, "told", text("#h-now + .scroll tbody tr")); !strings.Contains(told, "expertsender") ||
			!strings.Contains(told, "placed") || !strings.Contains(told, "done") {
			t.Errorf("what expertsender was told: %q", told)
		}
		kinds := get(t, ctx, "kinds", js[string](`[...document.querySelectorAll("ol.timeline .kind")].map(e => e.textContent).join()`))
		if strings.Count(kinds, "event") != 2 || strings.Count(kinds, "attempt") != 2 || strings.Count(kinds, "decision") != 2 {
			t.Errorf("timeline kinds: %s", kinds)
		}
		shot.take(ctx, "order")
	})

	t.Run("bulk retry with its preview count", func(t *testing.T) {
		before := len(es.Requests())
		step(t, ctx, "deliveries", chromedp.Navigate(base+"/ui/deliveries"), visible(`a[href^="/ui/deliveries/retry-all"]`))
		shot.take(ctx, "deliveries")
		step(t, ctx, "preview", andLoad(chromedp.Click(chromedp.CSS(`a[href^="/ui/deliveries/retry-all"]`))), visible("#retry-count"))
		count, body := get(t, ctx, "count", text("#retry-count")), get(t, ctx, "preview", text("main"))
		// Dead and still needing a person: 2001, 2002, and 2003, whose order was sent a newer
		// status since (1001's dead delivery was resolved by its done retry: not listed).
		if count != "2" || !strings.Contains(body, "3 match") || !strings.Contains(body, "1 left out: a newer delivery") {
			t.Errorf("preview: count %q\n%s", count, body)
		}
		if n := len(es.Requests()); n != before {
			t.Errorf("the preview sent %d requests", n-before)
		}
		shot.take(ctx, "retry-all")
		step(t, ctx, "confirm", andLoad(chromedp.Click(chromedp.CSS(`form[action="/ui/jobs"] button`))), visible("#job-bar"))
		if loc := get(t, ctx, "location", chromedp.Location()); !strings.Contains(loc, "/ui/jobs/") {
			t.Errorf("after confirming: %s", loc)
		}
		// The progress block refreshes itself until the job is done.
		step(t, ctx, "job done", poll(`document.querySelector("#job [data-final]") !== null`, 20*time.Second))
		if done, seen := get(t, ctx, "done", text("#job-done")), get(t, ctx, "examined", text("#job-count")); done != "2" || seen != "3" {
			t.Errorf("job: %s queued, %s examined; want 2 of 3", done, seen)
		}
		shot.take(ctx, "job")
		reqs := es.WaitRequests(before+2, 10*time.Second)
		got := map[string]string{}
		for _, r := range reqs[before:] {
			got[r.OrderID] = r.Status
		}
		if len(reqs) != before+2 || got["2001"] != "paid" || got["2002"] != "paid" {
			t.Errorf("ExpertSender got %v after the bulk retry, want paid for 2001 and 2002 only", got)
		}
	})

	t.Run("mapping: a broken candidate shows its line, a good one its diff", func(t *testing.T) {
		broken := "mapping:\n  statuses:\n    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }\n    zz00: { nme: Typo }\n"
		step(t, ctx, "broken", chromedp.Navigate(base+"/ui/mapping"), visible("#candidate"),
			chromedp.SetValue(chromedp.ID("candidate"), broken), andLoad(chromedp.Click(chromedp.CSS("form.candidate button"))), visible("#candidate-problems"))
		if p := get(t, ctx, "problems", text("#candidate-problems")); !strings.Contains(p, "line 4") || !strings.Contains(p, "mapping.statuses.zz00.nme") {
			t.Errorf("problems = %q", p)
		}
		good := "mapping:\n  statuses:\n    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: completed }\n" +
			"    x9q3wrlv0m7vzea8: { name: Awaiting confirmation, expertsender: placed }\n    shipped000000000: { name: Shipped, expertsender: shipped }\n"
		step(t, ctx, "good", chromedp.SetValue(chromedp.ID("candidate"), good), andLoad(chromedp.Click(chromedp.CSS("form.candidate button"))), visible("#candidate-diff"))
		if d := get(t, ctx, "diff", text("#candidate-diff")); !strings.Contains(d, "dispatched (expertsender=paid)") ||
			!strings.Contains(d, "dispatched (expertsender=completed)") || !strings.Contains(d, "unmapped") || !strings.Contains(d, "dispatched (expertsender=shipped)") {
			t.Errorf("diff = %q", d)
		}
		step(t, ctx, "scroll", chromedp.ScrollIntoView(chromedp.ID("candidate-diff")))
		shot.take(ctx, "mapping")
	})

	t.Run("a POST without the CSRF token is refused", func(t *testing.T) {
		step(t, ctx, "overview", chromedp.Navigate(base+"/ui/"), visible("#live"))
		if code := get(t, ctx, "post", js[int](`fetch("/ui/mapping/reload", {method: "POST", credentials: "same-origin"}).then(r => r.status)`)); code != http.StatusForbidden {
			t.Errorf("POST without a token: %d, want 403", code)
		}
		code := get(t, ctx, "forged", js[int](`fetch("/ui/jobs", {method: "POST", credentials: "same-origin",
			headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "csrf=forged"}).then(r => r.status)`))
		if code != http.StatusForbidden {
			t.Errorf("POST with a forged token: %d, want 403", code)
		}
		if _, body := s.call("GET", "/admin/jobs", nil); len(body["jobs"].([]any)) != 1 {
			t.Errorf("jobs after the refused POSTs: %v", body["jobs"])
		}
	})

	t.Run("the overview refreshes by itself", func(t *testing.T) {
		step(t, ctx, "overview", chromedp.Navigate(base+"/ui/"), visible("#h-targets"))
		if fresh := get(t, ctx, "mark", js[bool](`window.notReloaded = true; document.querySelector("#live").getAttribute("data-refreshed") === null`)); !fresh {
			t.Fatal("the overview was refreshed before it could be")
		}
		shot.take(ctx, "overview")
		hook(fake.Update{TicketID: "t4001", OrderID: "4001", StatusID: "shipped000000000", DateStatus: "2026-01-13 10:00:00"})
		step(t, ctx, "refreshed", poll(`document.querySelector("#h-unmapped + ul").innerText.includes("2 event(s)")`, 15*time.Second))
		if !get(t, ctx, "same page", js[bool](`window.notReloaded === true`)) {
			t.Error("the page was reloaded instead of refreshed in place")
		}
	})

	t.Run("a hostile payload renders as text", func(t *testing.T) {
		hostile := "<script>window.pwned=1</script>\"><img src=x onerror=\"window.pwned=2\"> مرحبا بالعالم 🎉\u2028end"
		quoted := strings.ReplaceAll(hostile, `"`, `\"`)
		raw := `{"event":"ticket.updated","data":{"id":"t666","data":{"id":"t666","external_id":"666\"><img src=x onerror=\"window.pwned=3\">",` +
			`"subject":"` + quoted + `","ticket_status_id":"` + confirmed + `"},` +
			`"changes":{"ticket_status_id":"` + confirmed + `","date_status":"2026-01-13 12:00:00"}}}`
		id := post([]byte(raw))
		for _, page := range []string{"/ui/events", "/ui/events/" + id} {
			step(t, ctx, "open "+page, chromedp.Navigate(base+page), visible("footer.foot"))
			injected := get(t, ctx, "injected", js[int](`document.querySelectorAll("img, body script").length + [...document.scripts].filter(s => !s.src.endsWith("/ui/static/app.js")).length`))
			if pwned := get(t, ctx, "pwned", js[bool](`window.pwned !== undefined`)); injected != 0 || pwned {
				t.Errorf("%s: %d injected elements, script ran: %v", page, injected, pwned)
			}
			if main := get(t, ctx, "text", text("main")); !strings.Contains(main, `666"><img src=x onerror="window.pwned=3">`) {
				t.Errorf("%s: the order id is not shown as text", page)
			}
		}
		if pretty := get(t, ctx, "pretty", js[string](`document.querySelector("#pretty").textContent`)); !strings.Contains(pretty, `"subject": "`+quoted+`"`) {
			t.Errorf("pretty payload does not hold the text exactly:\n%s", pretty)
		}
		if r := get(t, ctx, "raw", js[string](`document.querySelector("#raw").textContent`)); r != raw {
			t.Errorf("raw payload differs from the bytes sent:\n got %q\nwant %q", r, raw)
		}
	})

	t.Run("keyboard and narrow screens", func(t *testing.T) {
		step(t, ctx, "tab", chromedp.Navigate(base+"/ui/events"), visible("table.events"), chromedp.KeyEvent(kb.Tab))
		if focused := get(t, ctx, "focus", js[string](`document.activeElement.className`)); focused != "skip" {
			t.Errorf("first Tab focuses %q, want the skip link", focused)
		}
		unlabelled := get(t, ctx, "labels", js[[]string](`[...document.querySelectorAll("input:not([type=hidden]), select, textarea")].filter(e => !e.labels || e.labels.length === 0).map(e => e.name)`))
		if len(unlabelled) > 0 {
			t.Errorf("fields without a label: %v", unlabelled)
		}
		step(t, ctx, "phone", chromedp.EmulateViewport(390, 844))
		for _, page := range []string{"/ui/", "/ui/events", "/ui/events/" + single, "/ui/order?id=2003", "/ui/deliveries", "/ui/mapping"} {
			step(t, ctx, "390px "+page, chromedp.Navigate(base+page), visible("footer.foot"))
			if wide := get(t, ctx, "width", js[int](`document.documentElement.scrollWidth`)); wide > 390 {
				t.Errorf("%s is %d px wide at 390 px", page, wide)
			}
			if other := get(t, ctx, "hosts", js[[]string](`performance.getEntriesByType("resource").map(e => e.name).filter(u => !u.startsWith(location.origin + "/"))`)); len(other) > 0 {
				t.Errorf("%s asked another host for %v", page, other)
			}
		}
		step(t, ctx, "phone event", chromedp.Navigate(base+"/ui/events/"+single), visible("footer.foot"))
		shot.take(ctx, "phone-event")
		step(t, ctx, "desktop", chromedp.EmulateViewport(1280, 900))
	})

	t.Run("log out", func(t *testing.T) {
		step(t, ctx, "logout", chromedp.Navigate(base+"/ui/"), visible("form.logout button"),
			andLoad(chromedp.Click(chromedp.CSS("form.logout button"))), visible("#token"),
			chromedp.Navigate(base+"/ui/deliveries"), visible("#token"))
		if loc := get(t, ctx, "location", chromedp.Location()); !strings.Contains(loc, "/ui/login") {
			t.Errorf("after logout: %s", loc)
		}
	})
	if strings.Contains(s.logs.String(), adminTok) {
		t.Error("the admin token is in the logs")
	}
}
