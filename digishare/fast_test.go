package digishare

import (
	"os"
	"strings"
	"testing"
)

// TestFastPathAgreesOnTrickyBodies: bodies where encoding/json's rules
// (case-insensitive field names, last-wins repeats, escapes in keys, null
// where an object belongs) could make a hand-written scanner read something
// else. The fast path must either give up or agree with the precise
// decoder; and it must vouch for the ordinary shapes, or it is not fast.
func TestFastPathAgreesOnTrickyBodies(t *testing.T) {
	sample, err := os.ReadFile("testdata/ticket_updated.json")
	if err != nil {
		t.Fatal(err)
	}
	const base = `{"event":"ticket.updated","data":{"id":"t1","data":{"id":"t1","external_id":"ORDER-1","ticket_status_id":"s1",` +
		`"information":{"third":{"name":"A","wa_id":212600000000,"tags":["x"]},"campaign_data":{"order_id":"1","n":null}}},` +
		`"changes":{"ticket_status_id":"s1","date_status":"2026-01-13 16:29:51"}}}`
	vouched := []struct{ name, body string }{
		{"sample", string(sample)},
		{"base", base},
		{"whitespace", " " + strings.NewReplacer(`,"`, " ,\n\t\"", `":`, "\" :\r ", "{", "{ ", "}", " }").Replace(base) + "\n"},
		{"numbers for strings", strings.Replace(base, `"external_id":"ORDER-1"`, `"external_id":-1.5e+3,"ticket_number":12`, 1)},
		{"null ticket fields", strings.Replace(base, `"external_id":"ORDER-1"`, `"external_id":null,"subject":{"a":[1,{}]}`, 1)},
		{"escaped values", strings.Replace(base, `"name":"A"`, `"name":"A\u00e9\"\\\/\n"`, 1)},
		{"unknown fields everywhere", strings.Replace(base, `"event":"ticket.updated"`, `"x":[true,false,null,0,-0.1,"\u2028"],"event":"ticket.updated","y":{}`, 1)},
		{"no changes", `{"event":"ticket.created","data":{"id":"t1"}}`},
		{"null changes", strings.Replace(base, `"changes":{"ticket_status_id":"s1","date_status":"2026-01-13 16:29:51"}`, `"changes":null`, 1)},
		{"null information", strings.Replace(base, `"information":{"third":{"name":"A","wa_id":212600000000,"tags":["x"]},"campaign_data":{"order_id":"1","n":null}}`, `"information":null`, 1)},
		{"unicode keys in maps", strings.Replace(base, `"order_id":"1"`, `"order_id":"1","café":"ok","K":1`, 1)},
	}
	for _, c := range vouched {
		if !agree(t, []byte(c.body)) {
			t.Errorf("%s: the fast path gave up on an ordinary body", c.name)
		}
	}
	tricky := []string{
		strings.Replace(base, `"event"`, `"Update"`, 1),
		strings.Replace(base, `"event"`, `"\u0065vent"`, 1),
		strings.Replace(base, `"ticket_status_id":"s1",`, `"ticket_status_id":"s1","TICKET_STATUS_ID":"s2",`, 1),
		strings.Replace(base, `"ticket_status_id":"s1",`, `"tic\u212aet_status_id":"s2","ticket_status_id":"s1",`, 1), // Kelvin sign folds to k
		strings.Replace(base, `"ticket_status_id":"s1",`, `"ticket_status_id":"s1","ticket_status_id":"s2",`, 1),
		strings.Replace(base, `"data":{"id":"t1","data"`, `"data":{"id":"t1","id":"t2","data"`, 1),
		strings.Replace(base, `"changes":{"ticket_status_id":"s1"`, `"changes":{"ticket_status_id":"s1","ticket_status_id":"s2"`, 1),
		strings.Replace(base, `"changes":{"ticket_status_id":"s1"`, `"changes":{"ticket_status_id":"s1","ticket_status_i\u0064":"s2"`, 1),
		strings.Replace(base, `"third":{`, `"third":{"name":"B",`, 1),
		strings.Replace(base, `"information":{`, `"information":{"third":null,`, 1),
		strings.Replace(base, `"campaign_data":{"order_id":"1","n":null}`, `"campaign_data":[1]`, 1),
		strings.Replace(base, `"changes":{`, `"changes":"x","c":{`, 1),
		`{"event":"ticket.updated","data":{"id":"t1","data":{"id":"t1"},"data":{"external_id":"X"}}}`, // last wins, no merge
		strings.Replace(base, `"information":{`, `"information":{"third":{},"campaign_data":{}},"information":{`, 1),
		strings.Replace(base, `"changes":{`, `"changes":{"a":1},"changes":{`, 1),
		`{"event":"ticket.updated","data":null}`,
		`{"event":"ticket.updated","data":{"id":"t1","data":null}}`,
		`{"event":null,"data":{"id":"t1"}}`,
		`{"event":"e","data":{"id":1}}`,
		`{"event":"e","data":{"id":"t1"}} x`,
		`{"event":"e","data":{"id":"t1"}}}`,
		`{"event":"e","data":{"id":"t1","x":01}}`,
		`{"event":"e","data":{"id":"t1","x":1.}}`,
		`{"event":"e","data":{"id":"t1","x":"\x01"}}`,
		`{"event":"e","data":{"id":"t1","x":"\q"}}`,
		`{"event":"e","data":{"id":"t1","x":[1,]}}`,
		`{"event":"e","data":{"id":"t1","x":{"a":1,}}}`,
		`{"event":"e","data":{"id":"t1","x":tru}}`,
		`{"event":"e","data":{"id":"t1","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`,
		`[{"event":"e","data":{"id":"t1"}}]`,
		`{"event":"ticket.updated","data":{"id":"t1","data":{},"changes":{"date_status":"yesterday"}}}`,
	}
	for _, body := range tricky {
		agree(t, []byte(body))
	}
}
