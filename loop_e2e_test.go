package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/orders"
	"github.com/statusbridge/statusbridge/ticket"
)

const (
	loopIntakeToken = "intake-token-55"
	loopPAT         = "digishare-pat-77"
)

// loopConfig is a config with every system of the order intake pointed at
// fakes: ADDR and STORE are filled by startServer.
func loopConfig(ds, es, os string) string {
	return fmt.Sprintf(`listen: ADDR
log: { level: info, format: json }
store: { path: "STORE" }
admin: { token: %s }
intake: { token: %s }
order_id: { strip_prefix: "ORDER-" }
targets:
  expertsender: { base_url: %q, api_key: es-key-7788, timeout: 2s, orders: { currency: INR } }
  digishare:
    base_url: %q
    token: %s
    timeout: 2s
    ticket: { type_ticket_id: npvrxamq9l94y8dz, ticket_status_id: x9q3wrlv0m7vzea8, invoice: { allowed_hosts: [127.0.0.1] } }
  order_system: { base_url: %q, phone_region: MA }
delivery: { max_attempts: 5, backoff: { initial: 5ms, max: 50ms } }
mapping:
  statuses:
    x9q3wrlv0m7vzea8: { name: Awaiting confirmation, expertsender: placed }
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
`, adminTok, loopIntakeToken, es, ds+"/v1", loopPAT, os)
}

func seedOrderOn(t *testing.T, invoiceHost string) []byte {
	t.Helper()
	raw, err := os.ReadFile("orders/testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(string(raw), "https://storage.googleapis.com/", invoiceHost+"/invoices/"))
}

func (s *server) intake(body []byte) (int, map[string]any) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/webhooks/orders", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+loopIntakeToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// TestOrderLoopEndToEnd: the seed's order through the whole loop, through
// run(): intake → invoice download → upload → the ticket with exactly the
// rendered fields → ExpertSender POST /orders before any PUT → a
// ticket.updated for that ticket → the status PUT; then the order view,
// the metrics, and an order given by its id alone with orders push.
func TestOrderLoopEndToEnd(t *testing.T) {
	ds := fake.NewDigishare(t, loopPAT)
	es := fake.NewServer(t)
	osys := fake.NewOrderSystem(t)
	s := startServer(t, loopConfig(ds.URL, es.URL, osys.URL))
	seed := seedOrderOn(t, osys.URL)

	code, ans := s.intake(seed)
	if code != 200 || ans["state"] != "new" || ans["order_id"] != "44212809" || ans["duplicate"] != false {
		t.Fatalf("intake: %d %v", code, ans)
	}
	tickets := ds.WaitPath("/tickets", 1, 10*time.Second)
	if len(tickets) != 1 {
		t.Fatalf("%d tickets, want 1", len(tickets))
	}
	if up := ds.On("/messagesTemplates"); len(up) != 1 || len(osys.Requests()) != 1 ||
		!strings.HasPrefix(osys.Requests()[0].Path, "/invoices/invoicefiles-staging/") {
		t.Errorf("%d uploads, invoice host requests %v", len(up), osys.Requests())
	}
	cfg, err := config.Parse([]byte(strings.NewReplacer("ADDR", "127.0.0.1:1", "STORE", "x").Replace(loopConfig(ds.URL, es.URL, osys.URL))), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := orders.Decode(seed)
	want, err := ticket.Render(cfg.Targets.Digishare.Ticket, o, "MA", "media-1")
	if err != nil {
		t.Fatal(err)
	}
	if string(tickets[0].Body) != string(want.Body) {
		t.Errorf("ticket body\n%s\nwant\n%s", tickets[0].Body, want.Body)
	}
	var fields map[string]any
	_ = json.Unmarshal(tickets[0].Body, &fields)
	info, _ := fields["information"].(map[string]any)
	third, _ := info["third"].(map[string]any)
	campaign, _ := info["campaign_data"].(map[string]any)
	doc, _ := campaign["invoice_document"].(map[string]any)
	if fields["external_id"] != "ORDER-44212809" || fields["type_ticket_id"] != "npvrxamq9l94y8dz" || fields["ticket_status_id"] != "x9q3wrlv0m7vzea8" ||
		fields["create_third_data"] != true || fields["subject"] != "Order Confirmation" || fields["lang"] != "fr" ||
		third["wa_id"] != "919711166382" || third["email"] != "mituj@eshopbox.com" || third["name"] != "Mituj" || third["ext_ref"] != "TestLabel3" ||
		campaign["order_id"] != "44212809" || campaign["items_count"] != "2" || campaign["order_total"] != "1000.0" ||
		doc["provider"] != "digishare" || doc["id"] != "media-1" {
		t.Errorf("ticket fields: %s", tickets[0].Body)
	}
	eventually(t, "ExpertSender got POST /orders", func() bool { return len(es.Requests()) >= 1 })

	// Digishare reports the ticket's status change: the PUT follows the POST.
	u := fake.Update{TicketID: "tk-1", OrderID: "ORDER-44212809", StatusID: "yqdwrbka7kz69v8e", DateStatus: "2026-01-13 16:29:51"}
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/webhooks/digishare", bytes.NewReader(u.Payload()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("webhook: %v %v", resp, err)
	}
	resp.Body.Close()
	reqs := es.WaitRequests(2, 10*time.Second)
	if len(reqs) != 2 || reqs[0].Method != "POST" || reqs[0].Path != "/orders" || reqs[1].Method != "PUT" || reqs[1].Path != "/orders/status" ||
		reqs[1].OrderID != "44212809" || reqs[1].Status != "paid" {
		t.Fatalf("ExpertSender requests: %v", reqs)
	}

	// The order view: intakes, the ticket, one timeline across targets.
	var view struct {
		Intakes []map[string]any `json:"intakes"`
		Ticket  struct {
			ID      string `json:"id"`
			Number  string `json:"number"`
			MediaID string `json:"media_id"`
		} `json:"ticket"`
		Statuses map[string]struct {
			Status string `json:"status"`
		} `json:"statuses"`
		Timeline []struct {
			Type, Kind, Target string
		} `json:"timeline"`
	}
	eventually(t, "the order view shows the ticket and the PUT done", func() bool {
		code, body := s.call(http.MethodGet, "/admin/orders/44212809", nil)
		raw, _ := json.Marshal(body)
		view.Timeline = nil
		_ = json.Unmarshal(raw, &view)
		finished := 0
		for _, e := range view.Timeline {
			if e.Type == "finished" {
				finished++
			}
		}
		return code == 200 && finished == 3
	})
	kinds := map[string]bool{}
	for _, e := range view.Timeline {
		kinds[e.Type+" "+e.Kind+" "+e.Target] = true
	}
	for _, k := range []string{"intake  ", "event  ", "delivery ticket digishare", "delivery order expertsender", "delivery status expertsender",
		"attempt ticket digishare", "finished status expertsender"} {
		if !kinds[k] {
			t.Errorf("timeline lacks %q: %v", k, kinds)
		}
	}
	if len(view.Intakes) != 1 || view.Ticket.ID != "tk-1" || view.Ticket.Number != "340001" || view.Ticket.MediaID != "media-1" ||
		view.Statuses["expertsender"].Status != "paid" {
		t.Errorf("order view: %+v", view)
	}
	if got := s.metric(`statusbridge_intake_total{outcome="accepted"}`); got != "1" {
		t.Errorf("statusbridge_intake_total accepted = %q", got)
	}
	if got := s.metric(`statusbridge_delivery_attempts_total{result="done",target="digishare"}`); got != "1" {
		t.Errorf("digishare done attempts = %q", got)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, `"msg":"order intake"`) || strings.Contains(logs, "9711166382") || strings.Contains(logs, "mituj@eshopbox.com") ||
		strings.Contains(logs, loopPAT) || strings.Contains(logs, loopIntakeToken) {
		t.Errorf("logs leak or miss the intake line")
	}

	// The same order posted again: a duplicate, nothing new.
	if code, ans := s.intake(seed); code != 200 || ans["duplicate"] != true {
		t.Errorf("repeat: %d %v", code, ans)
	}

	// An order known by its id alone, pushed from the command line.
	second := strings.ReplaceAll(string(seed), `"orderId": "44212809"`, `"orderId": "50001"`)
	osys.Set("50001", []byte(second))
	var out, errb bytes.Buffer
	getenv := func(k string) (string, bool) {
		if k == "STATUSBRIDGE_ADMIN_TOKEN" {
			return adminTok, true
		}
		return "", false
	}
	if code := run(context.Background(), []string{"orders", "push", "50001", "--server", "http://" + s.addr}, getenv, &out, &errb); code != 0 {
		t.Fatalf("orders push: %d %s %s", code, out.String(), errb.String())
	}
	eventually(t, "the pushed order's ticket", func() bool { return ds.TicketsFor("ORDER-50001") == 1 })
	out.Reset()
	if code := run(context.Background(), []string{"orders", "show", "50001", "--server", "http://" + s.addr}, getenv, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "Intakes (2)") || !strings.Contains(out.String(), "source fetch") {
		t.Errorf("orders show: %d\n%s%s", code, out.String(), errb.String())
	}
	if n := ds.TicketsFor("ORDER-44212809"); n != 1 {
		t.Errorf("%d tickets for the seed order, want 1", n)
	}
}

// TestExampleConfigRecordsSkipped: the README's walk-through on the example
// config, without credentials: the intake is taken and its Digishare and
// ExpertSender steps are recorded as skipped.
func TestExampleConfigRecordsSkipped(t *testing.T) {
	raw, err := os.ReadFile("config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	yaml := strings.Replace(string(raw), "listen: 127.0.0.1:8080", "listen: "+addr, 1)
	yaml = strings.Replace(yaml, "path: data/statusbridge.db", "path: "+filepath.Join(dir, "sb.db"), 1)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"STATUSBRIDGE_ADMIN_TOKEN": adminTok, "STATUSBRIDGE_INTAKE_TOKEN": loopIntakeToken}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	logs := &fake.LogBuffer{}
	go func() {
		defer close(exited)
		run(ctx, []string{"serve", "--config", cfgPath}, getenv, io.Discard, logs)
	}()
	waitHealthy(t, addr, exited)
	defer func() { cancel(); <-exited }()
	s := &server{t: t, addr: addr, logs: logs}
	code, ans := s.intake(seedOrderOn(t, "https://storage.googleapis.com"))
	if code != 200 || ans["state"] != "new" {
		t.Fatalf("intake on the example config: %d %v", code, ans)
	}
	code, body := s.call(http.MethodGet, "/admin/orders/44212809", nil)
	ds, _ := body["deliveries"].([]any)
	states := map[string]string{}
	for _, d := range ds {
		m := d.(map[string]any)
		states[m["kind"].(string)] = m["state"].(string)
	}
	if code != 200 || states["ticket"] != "skipped" || states["order"] != "skipped" {
		t.Errorf("example config: %d, deliveries %v; want the ticket and the order skipped", code, states)
	}
	if !strings.Contains(logs.String(), "targets.digishare has no token") {
		t.Errorf("start-up does not warn that Digishare is disabled")
	}
}
