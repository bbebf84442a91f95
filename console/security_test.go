package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
)

func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	anon := e.client()
	csrfTok := c.login()
	for _, r := range []resp{
		anon.get("/ui/login"), anon.get("/ui/"), anon.get("/ui/static/app.css"), c.get("/ui/"), c.get("/ui/events"),
		c.get("/ui/nope"), c.do(http.MethodPost, "/ui/mapping/reload", url.Values{}, nil),
		c.do(http.MethodPost, "/ui/mapping/check", url.Values{"csrf": {csrfTok}, "candidate": {"x"}}, nil),
	} {
		h := r.hdr
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			!strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%d answer: CSP %q", r.code, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "same-origin" {
			t.Errorf("%d answer: headers %v", r.code, h)
		}
	}
	// No page holds an inline script or style: the policy would block it anyway.
	for _, p := range []string{"/ui/", "/ui/events", "/ui/mapping", "/ui/deliveries"} {
		doc, err := html.Parse(strings.NewReader(c.get(p).body))
		if err != nil {
			t.Fatal(err)
		}
		walk(doc, func(n *html.Node) {
			if n.Type == html.ElementNode && n.Data == "script" && (attr(n, "src") == "" || n.FirstChild != nil) {
				t.Errorf("%s: inline script", p)
			}
			if n.Type == html.ElementNode && (n.Data == "style" || attr(n, "style") != "") {
				t.Errorf("%s: inline style on <%s>", p, n.Data)
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("%s: event handler attribute %s on <%s>", p, a.Key, n.Data)
				}
			}
		})
	}
}

func TestLoginAndSessionCookie(t *testing.T) {
	proxies := admin.Proxies{netip.MustParsePrefix("127.0.0.1/32")}
	e := newEnv(t, func(o *Options) { o.Proxies = proxies })
	c := e.client()
	// A logged-out visit goes to the login page, keeping where it was going.
	r := c.get("/ui/events?state=dead")
	if r.code != http.StatusSeeOther || r.hdr.Get("Location") != "/ui/login?next="+url.QueryEscape("/ui/events?state=dead") {
		t.Fatalf("logged out: %d %v", r.code, r.hdr.Get("Location"))
	}
	if r := c.get("/ui/overview/live"); r.code != http.StatusUnauthorized {
		t.Errorf("a fragment without a session: %d, want 401", r.code)
	}
	page := c.get("/ui/login?next=" + url.QueryEscape("/ui/events?state=dead"))
	login := func(tok string, hdr map[string]string) resp {
		return c.do(http.MethodPost, "/ui/login", url.Values{"csrf": {csrf(t, page.body)}, "token": {tok}, "next": {"/ui/events?state=dead"}}, hdr)
	}
	if r := login("wrong-token", nil); r.code != http.StatusUnauthorized || cookieNamed(r.hdr, sessionCookie) != nil ||
		!strings.Contains(r.body, "That is not the admin token") || strings.Contains(r.body, "wrong-token") {
		t.Errorf("wrong token: %d %v", r.code, r.hdr)
	}
	page = c.get("/ui/login")
	r = login(token, nil)
	ck := cookieNamed(r.hdr, sessionCookie)
	if r.code != http.StatusSeeOther || r.hdr.Get("Location") != "/ui/events?state=dead" || ck == nil {
		t.Fatalf("login: %d %v", r.code, r.hdr)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.MaxAge != 12*3600 || ck.Path != "/ui" {
		t.Errorf("session cookie = %+v", ck)
	}
	if strings.Contains(ck.Value, token) || strings.Contains(r.hdr.Get("Location"), token) {
		t.Error("the token is in the cookie or the URL")
	}
	if r := c.get("/ui/events?state=dead"); r.code != 200 {
		t.Errorf("with the session: %d", r.code)
	}
	// Behind a trusted proxy that terminated TLS, the cookie is Secure.
	tls := e.client()
	tp := tls.get("/ui/login")
	tr := tls.do(http.MethodPost, "/ui/login", url.Values{"csrf": {csrf(t, tp.body)}, "token": {token}}, map[string]string{"X-Forwarded-Proto": "https"})
	if ck := cookieNamed(tr.hdr, sessionCookie); ck == nil || !ck.Secure {
		t.Errorf("over TLS at the proxy: %+v", ck)
	}
	// Logout clears it.
	csrfTok := csrf(t, c.get("/ui/").body)
	r = c.do(http.MethodPost, "/ui/logout", url.Values{"csrf": {csrfTok}}, nil)
	if ck := cookieNamed(r.hdr, sessionCookie); r.code != http.StatusSeeOther || ck == nil || ck.MaxAge >= 0 {
		t.Errorf("logout: %d %+v", r.code, ck)
	}
	if r := c.get("/ui/"); r.code != http.StatusSeeOther {
		t.Errorf("after logout: %d", r.code)
	}
	if strings.Contains(e.logs.String(), token) {
		t.Error("the token is in the logs")
	}
	// next never leads off the console.
	for _, next := range []string{"https://evil.example/", "//evil.example/ui/", "/elsewhere", "javascript:alert(1)"} {
		if got := localNext(next); got != "/ui/" {
			t.Errorf("localNext(%q) = %q", next, got)
		}
	}
}

func TestSessionsAreSignedWithTheToken(t *testing.T) {
	now := time.Unix(2e9, 0)
	k := deriveKeys("token-a")
	s, err := k.newSession(now)
	if err != nil {
		t.Fatal(err)
	}
	if !k.validSession(s, now.Add(11*time.Hour)) {
		t.Error("a fresh session refused")
	}
	if k.validSession(s, now.Add(12*time.Hour)) {
		t.Error("a session accepted after 12 h")
	}
	if deriveKeys("token-b").validSession(s, now) {
		t.Error("a session accepted after the token changed")
	}
	if deriveKeys("token-a").validSession(s, now) != true {
		t.Error("a session refused by another process with the same token (a restart, another replica)")
	}
	tampered := []byte(s)
	tampered[3] ^= 1
	if k.validSession(string(tampered), now) || k.validSession("", now) || k.validSession("x.y", now) {
		t.Error("a tampered session accepted")
	}
	if k.checkCSRF("session", s, k.csrfFor("session", s+"x")) || !k.checkCSRF("session", s, k.csrfFor("session", s)) {
		t.Error("CSRF tokens are not bound to their session")
	}
}

func TestPostWithoutCSRFChangesNothing(t *testing.T) {
	e := newEnv(t)
	r := e.ingest(fake.Update{TicketID: "t1", OrderID: "1", StatusID: confirmed}.Payload())
	id := r.Deliveries[0].ID
	if err := e.db.Record(context.Background(), id, bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: 400"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	c := e.client()
	good := c.login()
	other := e.client()
	otherTok := other.login() // a token of another session
	for name, form := range map[string]url.Values{"no token": {}, "empty": {"csrf": {""}}, "another session's": {"csrf": {otherTok}}, "garbage": {"csrf": {"x"}}} {
		for _, path := range []string{"/ui/deliveries/" + id + "/retry", "/ui/jobs", "/ui/events/" + r.EventID + "/replay", "/ui/mapping/reload", "/ui/logout"} {
			f := url.Values{"confirm": {"1"}}
			for k, v := range form {
				f[k] = v
			}
			if p := c.do(http.MethodPost, path, f, nil); p.code != http.StatusForbidden {
				t.Errorf("POST %s with %s CSRF token: %d, want 403", path, name, p.code)
			}
		}
	}
	if d, _ := e.db.GetDelivery(context.Background(), id); d.State != bridge.Dead {
		t.Errorf("delivery is %s", d.State)
	}
	if acts, _ := e.svc.Actions(context.Background(), 10); len(acts) != 0 {
		t.Errorf("refused POSTs did something: %+v", acts)
	}
	if jobs, _ := e.svc.Jobs(context.Background(), 10); len(jobs) != 0 {
		t.Errorf("refused POSTs created a job: %+v", jobs)
	}
	// The login form's token is bound to its nonce cookie.
	anon := e.client()
	if p := anon.do(http.MethodPost, "/ui/login", url.Values{"token": {token}}, nil); p.code != http.StatusForbidden || cookieNamed(p.hdr, sessionCookie) != nil {
		t.Errorf("login without CSRF: %d", p.code)
	}
	// With the right token the same POST works.
	p := c.do(http.MethodPost, "/ui/deliveries/"+id+"/retry", url.Values{"csrf": {good}}, nil)
	if p.code != http.StatusSeeOther || !strings.Contains(p.hdr.Get("Location"), "done=retried") {
		t.Errorf("retry with the token: %d %v\n%s", p.code, p.hdr, p.body)
	}
	if d, _ := e.db.GetDelivery(context.Background(), id); d.State != bridge.Dead { // the old one stays dead; a new one is pending
		t.Errorf("delivery is %s", d.State)
	}
	if st, _ := e.db.Stats(context.Background()); st.Pending != 1 {
		t.Errorf("pending = %d, want the retry", st.Pending)
	}
}

func TestLoginIsSlowedDownWithTheAPI(t *testing.T) {
	guard := admin.NewGuard(token)
	e := newEnv(t, func(o *Options) { o.Guard = guard })
	// Two wrong Bearer tokens at the admin API count with three wrong logins.
	guard.Check("127.0.0.1", "api-wrong-1")
	guard.Check("127.0.0.1", "api-wrong-2")
	c := e.client()
	try := func(tok string) resp {
		page := c.get("/ui/login")
		return c.do(http.MethodPost, "/ui/login", url.Values{"csrf": {csrf(t, page.body)}, "token": {tok}}, nil)
	}
	for range 3 {
		if r := try("nope"); r.code != http.StatusUnauthorized {
			t.Fatalf("wrong login: %d", r.code)
		}
	}
	r := try(token)
	if r.code != http.StatusTooManyRequests || r.hdr.Get("Retry-After") == "" || !strings.Contains(r.body, "Too many wrong tokens") ||
		cookieNamed(r.hdr, sessionCookie) != nil {
		t.Errorf("sixth try: %d %v", r.code, r.hdr)
	}
}

// hostile is text a payload may hold: markup, an attribute break-out,
// Arabic, emoji and U+2028.
const hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)> مرحبا بالعالم 🎉\u2028end"

func TestHostileTextRendersAsText(t *testing.T) {
	e := newEnv(t)
	raw := fake.Update{TicketID: "tk<b>1</b>", OrderID: "O\"><img src=x onerror=alert(3)>", StatusID: confirmed,
		Subject: hostile, Third: map[string]string{"name": hostile, "email": "a@example.com"}}.Payload()
	r := e.ingest(raw)
	c := e.client()
	c.login()
	for _, path := range []string{"/ui/events", "/ui/events/" + r.EventID, "/ui/order?id=" + url.QueryEscape("O\"><img src=x onerror=alert(3)>"), "/ui/deliveries?state=pending"} {
		p := c.get(path)
		if p.code != 200 {
			t.Fatalf("GET %s: %d", path, p.code)
		}
		doc, err := html.Parse(strings.NewReader(p.body))
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		walk(doc, func(n *html.Node) {
			switch {
			case n.Type == html.ElementNode && (n.Data == "img" || n.Data == "b"):
				t.Errorf("%s: an injected <%s> element", path, n.Data)
			case n.Type == html.ElementNode && n.Data == "script" && attr(n, "src") != "/ui/static/app.js":
				t.Errorf("%s: an injected script", path)
			case n.Type == html.TextNode:
				text.WriteString(n.Data)
			}
		})
		if !strings.Contains(text.String(), "O\"><img src=x onerror=alert(3)>") {
			t.Errorf("%s: the order id is not shown as text", path)
		}
		if strings.HasPrefix(path, "/ui/events/") {
			var pretty, rawText string
			walk(doc, func(n *html.Node) {
				if n.Type == html.ElementNode && n.Data == "pre" && n.FirstChild != nil {
					switch attr(n, "id") {
					case "pretty":
						pretty = n.FirstChild.Data
					case "raw":
						rawText = n.FirstChild.Data
					}
				}
			})
			if rawText != string(raw) {
				t.Errorf("raw payload differs from the bytes received:\n got %q\nwant %q", rawText, raw)
			}
			// The fake's body is written by encoding/json, which spells < > &
			// and U+2028 as \u escapes: the page shows them as received.
			spelled, _ := json.Marshal(hostile)
			if !strings.Contains(pretty, `"subject": `+string(spelled)) {
				t.Errorf("pretty payload lost the text:\n%s\nwant %s", pretty, spelled)
			}
		}
	}
}

func TestHostileRawMarkupInPayload(t *testing.T) {
	// A payload whose JSON holds markup literally (not \u-escaped).
	e := newEnv(t)
	raw := []byte(`{"event":"ticket.updated","data":{"id":"t9","data":{"id":"t9","external_id":"55","subject":"` +
		`<script>alert(1)</script>\"><img src=x onerror=alert(2)> مرحبا 🎉` + "\u2028" + `","ticket_status_id":"` + confirmed +
		`"},"changes":{"ticket_status_id":"` + confirmed + `"}}}`)
	r := e.ingest(raw)
	c := e.client()
	c.login()
	p := c.get("/ui/events/" + r.EventID)
	doc, _ := html.Parse(strings.NewReader(p.body))
	var pretty string
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "img" || (n.Data == "script" && attr(n, "src") == "")) {
			t.Errorf("injected <%s>", n.Data)
		}
		if n.Type == html.ElementNode && n.Data == "pre" && attr(n, "id") == "pretty" && n.FirstChild != nil {
			pretty = n.FirstChild.Data
		}
	})
	want := `"subject": "<script>alert(1)</script>\"><img src=x onerror=alert(2)> مرحبا 🎉` + "\u2028" + `"`
	if !strings.Contains(pretty, want) {
		t.Errorf("pretty payload:\n%s\nwant it to hold %q", pretty, want)
	}
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
