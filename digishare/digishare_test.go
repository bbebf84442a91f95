package digishare

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDecodeSample(t *testing.T) {
	raw, err := os.ReadFile("testdata/ticket_updated.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Decode(raw)
	if err != nil {
		t.Fatalf("Decode(sample) error = %v", err)
	}
	if ev.Name != EventTicketUpdated || ev.TicketID != "hashed_ticket_id" {
		t.Errorf("name, ticket = %q, %q", ev.Name, ev.TicketID)
	}
	if ev.Ticket.ExternalID != "ORDER-12345" || ev.Ticket.TypeTicketID != "npvrxamq9l94y8dz" || ev.Ticket.TicketNumber != "342106" {
		t.Errorf("ticket = %+v", ev.Ticket)
	}
	if ev.Ticket.Third["wa_id"] != "212600000000" || ev.Ticket.Third["email"] != "ahmed.alami@example.com" {
		t.Errorf("third = %v", ev.Ticket.Third)
	}
	if v, ok := ev.Ticket.CampaignString("order_total"); !ok || v != "500.00" {
		t.Errorf("campaign order_total = %q, %v", v, ok)
	}
	if _, ok := ev.Ticket.CampaignString("invoice_document"); ok {
		t.Error("an object in campaign_data must not read as a string")
	}
	if s, ok := ev.StatusID(); !ok || s != "yqdwrbka7kz69v8e" {
		t.Errorf("StatusID() = %q, %v", s, ok)
	}
	ts, text, ok := ev.ChangedAt()
	if want := time.Date(2026, 1, 13, 16, 29, 51, 0, time.UTC); !ok || !ts.Equal(want) || text != "2026-01-13 16:29:51" {
		t.Errorf("ChangedAt() = %v, %q, %v", ts, text, ok)
	}
}

func TestDecodeRejectsWhatIsNotJSON(t *testing.T) {
	for name, body := range map[string]string{
		"empty":        "",
		"whitespace":   "  \n ",
		"text":         "hello",
		"truncated":    `{"event":"ticket.updated"`,
		"invalid utf8": "{\"event\":\"\xff\xfe\"}",
		"nul byte":     "{\"event\":\x00}",
		"trailing":     `{"event":"a"} x`,
		"deep nesting": strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte(body))
			if !errors.Is(err, ErrNotJSON) {
				t.Errorf("Decode(%.20q) error = %v, want ErrNotJSON", body, err)
			}
		})
	}
}

func TestDecodeShapeErrors(t *testing.T) {
	cases := []struct{ name, body, reason string }{
		{"array body", `[1,2]`, "not a JSON object"},
		{"string body", `"x"`, "not a JSON object"},
		{"missing event", `{"data":{"id":"t"}}`, "missing event"},
		{"event number", `{"event":5,"data":{"id":"t"}}`, "event is not"},
		{"event empty", `{"event":"","data":{"id":"t"}}`, "event is not"},
		{"data array", `{"event":"ticket.updated","data":[]}`, "data is not an object"},
		{"missing data", `{"event":"ticket.updated"}`, "data is not an object"},
		{"missing id", `{"event":"ticket.updated","data":{"data":{}}}`, "missing data.id"},
		{"numeric id", `{"event":"ticket.updated","data":{"id":12,"data":{}}}`, "data.id is not"},
		{"changes array", `{"event":"ticket.updated","data":{"id":"t","data":{},"changes":[]}}`, "changes is not an object"},
		{"data.data string", `{"event":"ticket.updated","data":{"id":"t","data":"x"}}`, "data.data is not an object"},
		{"ticket.updated without data.data", `{"event":"ticket.updated","data":{"id":"t"}}`, "missing data.data"},
		{"bad timestamp", `{"event":"ticket.updated","data":{"id":"t","data":{},"changes":{"date_status":"yesterday"}}}`, "date_status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := Decode([]byte(c.body))
			var se *ShapeError
			if !errors.As(err, &se) {
				t.Fatalf("Decode(%s) error = %v, want *ShapeError", c.body, err)
			}
			if !strings.Contains(se.Reason, c.reason) {
				t.Errorf("reason = %q, want it to contain %q", se.Reason, c.reason)
			}
			if ev == nil {
				t.Fatal("a shape error must still return the partial event (for its dedup key)")
			}
		})
	}
}

func TestDecodeLenientWhereSafe(t *testing.T) {
	// Unknown fields, numbers where strings belong, null changes, other events.
	ev, err := Decode([]byte(`{"event":"ticket.updated","x":1,"data":{"id":"t","data":{"external_id":12345,"new":{"a":1}},"changes":null}}`))
	if err != nil {
		t.Fatalf("Decode error = %v", err)
	}
	if ev.Ticket.ExternalID != "12345" {
		t.Errorf("numeric external_id = %q, want 12345", ev.Ticket.ExternalID)
	}
	if _, ok := ev.StatusID(); ok {
		t.Error("null changes must read as no status change")
	}
	if _, err := Decode([]byte(`{"event":"third.updated","data":{"id":"x"}}`)); err != nil {
		t.Errorf("other events need no data.data: %v", err)
	}
}

func TestDedupKeyIsCanonical(t *testing.T) {
	a := `{"event":"ticket.updated","data":{"id":"t","data":{"x":1},"changes":{"ticket_status_id":"s","updated_at":"2026-01-13 16:29:51"}}}`
	b := "{ \"data\": {\"changes\": {\"updated_at\":\"2026-01-13 16:29:51\",  \"ticket_status_id\":\"s\"}, \"id\":\"t\", \"data\":{\"x\":2}}, \"event\":\"ticket.updated\"}"
	other := `{"event":"ticket.updated","data":{"id":"t","data":{},"changes":{"ticket_status_id":"s2","updated_at":"2026-01-13 16:29:51"}}}`
	otherTicket := `{"event":"ticket.updated","data":{"id":"t2","data":{},"changes":{"ticket_status_id":"s","updated_at":"2026-01-13 16:29:51"}}}`
	otherEvent := `{"event":"ticket.created","data":{"id":"t","data":{},"changes":{"ticket_status_id":"s","updated_at":"2026-01-13 16:29:51"}}}`
	key := func(s string) [32]byte {
		ev, err := Decode([]byte(s))
		if err != nil {
			t.Fatalf("Decode(%s): %v", s, err)
		}
		return ev.DedupKey
	}
	if key(a) != key(b) {
		t.Error("same event, changes in another key order and spacing: keys differ")
	}
	for _, s := range []string{other, otherTicket, otherEvent} {
		if key(a) == key(s) {
			t.Errorf("different update %s has the same key", s)
		}
	}
	missing := `{"event":"ticket.updated","data":{"id":"t","data":{}}}`
	empty := `{"event":"ticket.updated","data":{"id":"t","data":{},"changes":{}}}`
	if key(missing) != key(empty) {
		t.Error("a missing changes must count as {}")
	}
}

func TestChangedAtFallsBackToUpdatedAt(t *testing.T) {
	ev, err := Decode([]byte(`{"event":"ticket.updated","data":{"id":"t","data":{},"changes":{"updated_at":"2026-01-13 10:00:00"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ts, _, ok := ev.ChangedAt(); !ok || ts.Hour() != 10 {
		t.Errorf("ChangedAt() = %v, %v; want updated_at", ts, ok)
	}
	ev, _ = Decode([]byte(`{"event":"ticket.updated","data":{"id":"t","data":{},"changes":{}}}`))
	if _, _, ok := ev.ChangedAt(); ok {
		t.Error("no timestamp must report ok=false")
	}
}
