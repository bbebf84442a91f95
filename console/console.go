// Package console is the operator's console in the browser, served at /ui/:
// server-rendered pages (html/template, so everything shown is escaped) over
// the admin service, with one small script of its own for what a page does
// by itself (refreshing the overview and a job's progress, local times on
// hover, copying a payload). Everything it needs is embedded in the binary;
// pages ask no other host for anything.
package console

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bridge"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the console.
type Options struct {
	// Token is the admin token: the login form takes it, and the key that
	// signs sessions is derived from it.
	Token string
	// Guard checks the token (share the admin API's, so wrong tokens count
	// together); nil makes one.
	Guard   *admin.Guard
	Proxies admin.Proxies
	Log     *slog.Logger
	Now     func() time.Time
}

// Console serves the pages.
type Console struct {
	svc     *admin.Service
	guard   *admin.Guard
	proxies admin.Proxies
	keys    keys
	log     *slog.Logger
	now     func() time.Time
	pages   map[string]*template.Template
	mux     *http.ServeMux
	static  http.Handler
}

// New builds the console over the admin service.
func New(svc *admin.Service, o Options) (*Console, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Guard == nil {
		o.Guard = admin.NewGuard(o.Token)
	}
	if o.Token == "" {
		return nil, errors.New("console: needs the admin token")
	}
	c := &Console{svc: svc, guard: o.Guard, proxies: o.Proxies, keys: deriveKeys(o.Token), log: o.Log, now: o.Now,
		pages: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", n, err)
		}
		c.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	sub, _ := fs.Sub(staticFS, "static")
	c.static = http.StripPrefix("/ui/static/", http.FileServer(http.FS(sub)))
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /ui/static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		c.static.ServeHTTP(w, r)
	})
	m.HandleFunc("GET /ui/login", c.loginPage)
	m.HandleFunc("POST /ui/login", c.login)
	m.HandleFunc("POST /ui/logout", c.authed(c.logout))
	m.HandleFunc("GET /ui/{$}", c.authed(c.overview))
	m.HandleFunc("GET /ui/overview/live", c.authed(c.overviewLive))
	m.HandleFunc("GET /ui/events", c.authed(c.events))
	m.HandleFunc("GET /ui/events/{id}", c.authed(c.event))
	m.HandleFunc("POST /ui/events/{id}/replay", c.authed(c.replay))
	m.HandleFunc("GET /ui/order", c.authed(c.order))
	m.HandleFunc("GET /ui/deliveries", c.authed(c.deliveries))
	m.HandleFunc("POST /ui/deliveries/{id}/retry", c.authed(c.retry))
	m.HandleFunc("GET /ui/deliveries/retry-all", c.authed(c.retryAllPreview))
	m.HandleFunc("POST /ui/jobs", c.authed(c.createJob))
	m.HandleFunc("GET /ui/jobs/{id}", c.authed(c.job))
	m.HandleFunc("GET /ui/jobs/{id}/live", c.authed(c.jobLive))
	m.HandleFunc("GET /ui/mapping", c.authed(c.mapping))
	m.HandleFunc("POST /ui/mapping/check", c.authed(c.mappingCheck))
	m.HandleFunc("POST /ui/mapping/reload", c.authed(c.mappingReload))
	m.HandleFunc("/ui/", c.authed(func(w http.ResponseWriter, r *http.Request, _ *request) {
		c.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
	}))
	m.HandleFunc("/ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusFound) })
	c.mux = m
}

// maxForm bounds a POSTed form (a pasted mapping section is the largest).
const maxForm = 1 << 20

// csp allows nothing but this server's own script, styles and fetches: no
// inline script, no inline style, no frames, no other host.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP sets the security headers every answer carries and routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// request is what a handler behind authed knows of its request.
type request struct {
	session string
	csrf    string // the token forms of this session carry
	from    string // the client address
}

// authed lets a request through with a valid session; a visit without one
// is sent to the login page (a fragment gets 401, its script reloads). A
// POST must carry this session's CSRF token, or gets 403 and changes nothing.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rq := &request{session: c.session(r), from: c.proxies.ClientIP(r)}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil || !c.keys.checkCSRF("session", rq.session, r.PostForm.Get("csrf")) {
				c.log.Warn("console: POST refused: no valid CSRF token", "path", r.URL.Path, "remote", rq.from)
				c.fail(w, r, nil, http.StatusForbidden, "Refused: this form is stale or did not come from this console. Reload the page and try again.")
				return
			}
		}
		if rq.session == "" {
			if strings.HasSuffix(r.URL.Path, "/live") {
				http.Error(w, "log in again", http.StatusUnauthorized)
				return
			}
			next := r.URL.Path
			if r.URL.RawQuery != "" {
				next += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		rq.csrf = c.keys.csrfFor("session", rq.session)
		h(w, r, rq)
	}
}

// page is what every page's template gets.
type page struct {
	Title string
	Nav   string // the nav entry to mark current
	CSRF  string
	Flash string
	Data  any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, rq *request, code int, name string, p page) {
	t, ok := c.pages[name]
	if !ok {
		c.log.Error("console: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if rq != nil {
		p.CSRF = rq.csrf
		if p.Nav == "" && rq.session != "" {
			p.Nav = "none" // logged in: the page has the console's header
		}
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = buf.WriteTo(w)
}

// fragment renders one named template of a page alone (live refreshes).
func (c *Console) fragment(w http.ResponseWriter, name, block string, data any) {
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, block, data); err != nil {
		c.log.Error("console: render", "page", name, "block", block, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = buf.WriteTo(w)
}

type failure struct {
	Message string
	Back    string
}

// fail answers with a page that says what went wrong, for people: err (may
// be nil) is logged when it is not the service's own refusal.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, rq *request, code int, msg string) {
	back := r.Referer()
	if u, err := url.Parse(back); err != nil || u.Host != r.Host || !strings.HasPrefix(u.Path, "/ui/") {
		back = "/ui/"
	}
	c.render(w, r, rq, code, "error", page{Title: http.StatusText(code), Data: failure{Message: msg, Back: back}})
}

// failErr answers err from the service with the status code it means.
func (c *Console) failErr(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	var ie *admin.InputError
	code := http.StatusInternalServerError
	switch {
	case errors.As(err, &ie):
		code = http.StatusBadRequest
	case errors.Is(err, bridge.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, bridge.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, bridge.ErrOverloaded), errors.Is(err, bridge.ErrUnavailable), errors.Is(err, bridge.ErrClosed):
		code = http.StatusServiceUnavailable
	default:
		c.log.Error("console: request failed", "path", r.URL.Path, "err", err)
	}
	c.fail(w, r, rq, code, capitalize(admin.UserMessage(err)))
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
