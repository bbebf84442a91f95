package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
)

// localNext is next when it is a page of the console, else the overview
// (the login form never sends anyone to another site).
func localNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/ui/") || strings.HasPrefix(next, "//") {
		return "/ui/"
	}
	return u.RequestURI()
}

type loginData struct {
	Next    string
	Message string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != "" {
		http.Redirect(w, r, localNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, r.URL.Query().Get("next"), "")
}

// showLogin renders the login form with a fresh nonce cookie its CSRF token
// is bound to.
func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, code int, next, msg string) {
	nonce, err := randomNonce()
	if err != nil {
		c.log.Error("console: random nonce", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, c.cookie(r, loginCookie, nonce, time.Hour))
	c.render(w, r, &request{csrf: c.keys.csrfFor("login", nonce)}, code, "login",
		page{Title: "Log in", Data: loginData{Next: localNext(next), Message: msg}})
}

// login takes the admin token from the form (never from the URL), checks it
// through the guard shared with the admin API and starts a session.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	from := c.proxies.ClientIP(r)
	nonce := ""
	if ck, err := r.Cookie(loginCookie); err == nil {
		nonce = ck.Value
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !c.keys.checkCSRF("login", nonce, r.PostForm.Get("csrf")) {
		c.log.Warn("console: login refused: no valid CSRF token", "remote", from)
		c.fail(w, r, nil, http.StatusForbidden, "Refused: this login form is stale or did not come from this console. Open the login page again.")
		return
	}
	next := r.PostForm.Get("next")
	ok, wait := c.guard.Check(from, r.PostForm.Get("token"))
	switch {
	case wait > 0:
		c.log.Warn("console: login refused: too many wrong tokens from this address", "remote", from)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		c.showLogin(w, r, http.StatusTooManyRequests, next,
			"Too many wrong tokens from your address. Try again in "+strconv.Itoa(int(wait.Seconds())+1)+" seconds.")
		return
	case !ok:
		c.log.Warn("console: login refused: wrong token", "remote", from)
		c.showLogin(w, r, http.StatusUnauthorized, next, "That is not the admin token.")
		return
	}
	sess, err := c.keys.newSession(c.now())
	if err != nil {
		c.log.Error("console: new session", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, c.cookie(r, sessionCookie, sess, sessionTTL))
	http.SetCookie(w, c.cookie(r, loginCookie, "", -1))
	c.log.Info("console: logged in", "remote", from)
	http.Redirect(w, r, localNext(next), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, rq *request) {
	http.SetCookie(w, c.cookie(r, sessionCookie, "", -1))
	c.log.Info("console: logged out", "remote", rq.from)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// Overview.

func (c *Console) overview(w http.ResponseWriter, r *http.Request, rq *request) {
	o, err := c.svc.Overview(r.Context())
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	c.render(w, r, rq, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Data: o})
}

func (c *Console) overviewLive(w http.ResponseWriter, r *http.Request, _ *request) {
	o, err := c.svc.Overview(r.Context())
	if err != nil {
		http.Error(w, admin.UserMessage(err), http.StatusServiceUnavailable)
		return
	}
	c.fragment(w, "overview", "live", o)
}

// Events.

type eventsData struct {
	Filter  url.Values // as asked, to fill the form and the pager
	States  []bridge.EventState
	Rows    []bridge.EventSummary
	Next    string // the next page's URL ("" on the last)
	First   string // the first page's URL, when this is not it
	Problem string
}

func (c *Console) events(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	d := eventsData{Filter: q, States: bridge.EventStates, Rows: []bridge.EventSummary{}}
	f := bridge.EventFilter{State: q.Get("state"), OrderID: strings.TrimSpace(q.Get("order_id")), TicketID: strings.TrimSpace(q.Get("ticket_id")),
		StatusID: strings.TrimSpace(q.Get("status_id")), Cursor: q.Get("cursor"), Limit: 50}
	var err error
	if f.Since, err = formTime("Received from", q.Get("since")); err == nil {
		f.Until, err = formTime("Received before", q.Get("until"))
	}
	if err == nil {
		var next string
		d.Rows, next, err = c.svc.Events(r.Context(), f)
		if next != "" {
			d.Next = withParam(q, "cursor", next)
		}
	}
	if q.Get("cursor") != "" {
		d.First = withParam(q, "cursor", "")
	}
	if d.Problem, err = refused(err); err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	c.render(w, r, rq, http.StatusOK, "events", page{Title: "Events", Nav: "events", Data: d})
}

func formTime(label, v string) (t0 time.Time, err error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return t0, nil
	}
	t, perr := digishare.ParseTime(v)
	if perr != nil {
		return t0, &admin.InputError{Msg: label + ": write YYYY-MM-DD HH:MM:SS (UTC) or RFC 3339"}
	}
	return t, nil
}

// refused splits a listing's error: a filter the service refused is shown
// on the page (problem); anything else is returned, to fail the page.
func refused(err error) (problem string, _ error) {
	var ie *admin.InputError
	if errors.As(err, &ie) {
		return capitalize(ie.Msg), nil
	}
	return "", err
}

// withParam is the current URL's query with one parameter set (removed
// when value is empty) and the empty ones left out.
func withParam(q url.Values, key, value string) string {
	n := url.Values{}
	for k, v := range q {
		if len(v) > 0 && v[0] != "" && k != key {
			n[k] = slices.Clone(v)
		}
	}
	if value != "" {
		n.Set(key, value)
	}
	return "?" + n.Encode()
}

// Event.

type eventData struct {
	Detail  *bridge.EventDetail
	Pretty  string // the payload, indented
	Raw     string // the payload as received
	Dry     *bridge.ReplaySummary
	Force   bool
	Summary *bridge.ReplaySummary // after a replay
}

func (c *Console) eventData(ctx context.Context, id string) (*eventData, error) {
	d, err := c.svc.Event(ctx, id)
	if err != nil {
		return nil, err
	}
	ed := &eventData{Detail: d}
	var raw string
	if err := json.Unmarshal(d.Payload, &raw); err == nil {
		ed.Raw, ed.Pretty = raw, raw // stored as text: it was not JSON
	} else {
		ed.Raw = string(d.Payload)
		var buf bytes.Buffer
		if json.Indent(&buf, d.Payload, "", "  ") == nil {
			ed.Pretty = buf.String()
		} else {
			ed.Pretty = ed.Raw
		}
	}
	return ed, nil
}

func (c *Console) event(w http.ResponseWriter, r *http.Request, rq *request) {
	ed, err := c.eventData(r.Context(), r.PathValue("id"))
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	c.render(w, r, rq, http.StatusOK, "event", page{Title: "Event " + ed.Detail.Event.ID, Nav: "events", Flash: flash(r), Data: ed})
}

var (
	idText      = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	versionText = regexp.MustCompile(`^[0-9a-f]{12}$`)
)

// flash is the message of a redirect after an action: fixed texts, with
// only an id, a version or a number taken from the URL.
func flash(r *http.Request) string {
	q := r.URL.Query()
	switch q.Get("done") {
	case "retried":
		if idText.MatchString(q.Get("delivery")) {
			return "Retry queued as delivery " + q.Get("delivery") + "."
		}
	case "replayed":
		if n, err := strconv.Atoi(q.Get("dispatched")); err == nil && n >= 0 {
			return "Replayed: " + strconv.Itoa(n) + " event(s) dispatched."
		}
	case "reloaded":
		if versionText.MatchString(q.Get("version")) {
			return "Mapping reloaded from the config file: version " + q.Get("version") + "."
		}
	}
	return ""
}

// replay dry-runs the event's replay first (the page shows what it would
// send); confirm=1 replays it for real.
func (c *Console) replay(w http.ResponseWriter, r *http.Request, rq *request) {
	id := r.PathValue("id")
	force := r.PostForm.Get("force") == "1"
	confirm := r.PostForm.Get("confirm") == "1"
	sum, err := c.svc.Replay(r.Context(), rq.from, bridge.ReplaySelector{EventIDs: []string{id}}, bridge.ReplayOptions{DryRun: !confirm, Force: force})
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	if confirm {
		http.Redirect(w, r, "/ui/events/"+url.PathEscape(id)+"?done=replayed&dispatched="+strconv.Itoa(sum.Dispatched), http.StatusSeeOther)
		return
	}
	ed, err := c.eventData(r.Context(), id)
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	ed.Dry, ed.Force = &sum, force
	c.render(w, r, rq, http.StatusOK, "event", page{Title: "Replay event " + id, Nav: "events", Data: ed})
}

// Order.

func (c *Console) order(w http.ResponseWriter, r *http.Request, rq *request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		c.render(w, r, rq, http.StatusOK, "order", page{Title: "Order", Nav: "order"})
		return
	}
	v, err := c.svc.Order(r.Context(), id)
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	c.render(w, r, rq, http.StatusOK, "order", page{Title: "Order " + id, Nav: "order", Data: v})
}

// Deliveries.

type deliveriesData struct {
	State    string
	Target   string
	Resolved bool // dead ones a done successor resolved are listed too
	States   []bridge.DeliveryState
	Targets  []string
	Rows     []bridge.Delivery
	Next     string
	Problem  string
}

func (c *Console) deliveries(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	if !q.Has("state") {
		q.Set("state", string(bridge.Dead)) // dead by default: what needs a person
	}
	d := deliveriesData{State: q.Get("state"), Target: q.Get("target"), States: bridge.DeliveryStates, Rows: []bridge.Delivery{}}
	targets, err := c.svc.Targets(r.Context())
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	d.Targets = targets
	d.Resolved = q.Get("include_resolved") == "1"
	rows, next, err := c.svc.Deliveries(r.Context(), bridge.DeliveryFilter{State: d.State, Target: d.Target, IncludeResolved: d.Resolved,
		Cursor: q.Get("cursor"), Limit: 50})
	if d.Problem, err = refused(err); err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	if d.Problem == "" {
		d.Rows = rows
		if next != "" {
			d.Next = withParam(q, "cursor", next)
		}
	}
	c.render(w, r, rq, http.StatusOK, "deliveries", page{Title: "Deliveries", Nav: "deliveries", Flash: flash(r), Data: d})
}

func (c *Console) retry(w http.ResponseWriter, r *http.Request, rq *request) {
	d, err := c.svc.Retry(r.Context(), rq.from, r.PathValue("id"))
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	back := "/ui/deliveries?state=dead"
	if r.PostForm.Get("from") == "event" {
		back = "/ui/events/" + url.PathEscape(d.EventID) + "?"
	} else {
		back += "&"
	}
	http.Redirect(w, r, back+"done=retried&delivery="+url.QueryEscape(d.ID), http.StatusSeeOther)
}

func (c *Console) retryAllPreview(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	p, err := c.svc.PreviewRetry(r.Context(), admin.JobRequest{Filter: bridge.JobFilter{Target: q.Get("target")}, IncludeUnknown: q.Get("include_unknown") == "1"})
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	c.render(w, r, rq, http.StatusOK, "retryall", page{Title: "Retry all dead deliveries", Nav: "deliveries", Data: p})
}

func (c *Console) createJob(w http.ResponseWriter, r *http.Request, rq *request) {
	j, err := c.svc.CreateJob(r.Context(), rq.from, admin.JobRequest{Filter: bridge.JobFilter{Target: r.PostForm.Get("target")},
		IncludeUnknown: r.PostForm.Get("include_unknown") == "1"})
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(j.ID), http.StatusSeeOther)
}

func (c *Console) job(w http.ResponseWriter, r *http.Request, rq *request) {
	j, err := c.svc.Job(r.Context(), r.PathValue("id"))
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	c.render(w, r, rq, http.StatusOK, "job", page{Title: "Job " + j.ID, Nav: "deliveries", Data: j})
}

func (c *Console) jobLive(w http.ResponseWriter, r *http.Request, _ *request) {
	j, err := c.svc.Job(r.Context(), r.PathValue("id"))
	if err != nil {
		http.Error(w, admin.UserMessage(err), http.StatusNotFound)
		return
	}
	c.fragment(w, "job", "progress", j)
}

// Mapping.

type mappingData struct {
	View      *admin.MappingView
	Candidate string
	Last      int
	Preview   *admin.MappingPreview
	Problems  []config.Problem // of a reload
	Reloaded  bool
}

func (c *Console) mappingPage(w http.ResponseWriter, r *http.Request, rq *request, code int, d mappingData) {
	v, err := c.svc.Mapping(r.Context())
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	d.View = v
	if d.Candidate == "" {
		d.Candidate = v.Section
	}
	if d.Last == 0 {
		d.Last = 100
	}
	c.render(w, r, rq, code, "mapping", page{Title: "Mapping", Nav: "mapping", Flash: flash(r), Data: d})
}

func (c *Console) mapping(w http.ResponseWriter, r *http.Request, rq *request) {
	c.mappingPage(w, r, rq, http.StatusOK, mappingData{})
}

func (c *Console) mappingCheck(w http.ResponseWriter, r *http.Request, rq *request) {
	d := mappingData{Candidate: r.PostForm.Get("candidate")}
	last, err := admin.ParseLast(r.PostForm.Get("last"))
	if err == nil {
		d.Last = last
		d.Preview, err = c.svc.PreviewMapping(r.Context(), []byte(d.Candidate), last)
	}
	if err != nil {
		c.failErr(w, r, rq, err)
		return
	}
	code := http.StatusOK
	if len(d.Preview.Problems) > 0 {
		code = http.StatusUnprocessableEntity
	}
	c.mappingPage(w, r, rq, code, d)
}

// mappingReload applies the config file on disk; the page never writes it.
func (c *Console) mappingReload(w http.ResponseWriter, r *http.Request, rq *request) {
	res, err := c.svc.Reload(r.Context(), rq.from)
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		c.mappingPage(w, r, rq, http.StatusUnprocessableEntity, mappingData{Problems: ce.Problems})
	case err != nil:
		c.failErr(w, r, rq, err)
	default:
		http.Redirect(w, r, "/ui/mapping?done=reloaded&version="+url.QueryEscape(res.Version), http.StatusSeeOther)
	}
}
