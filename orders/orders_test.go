package orders

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func seedOrder(t testing.TB) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDecodeSeedOrder(t *testing.T) {
	raw := seedOrder(t)
	o, err := Decode(raw)
	if err != nil {
		t.Fatalf("Decode(seed) = %v", err)
	}
	if o.ID != "44212809" || o.IDOnly {
		t.Errorf("ID = %q, IDOnly = %v; want 44212809, false", o.ID, o.IDOnly)
	}
	if !bytes.Equal(o.Raw, raw) {
		t.Error("Raw is not the body byte for byte")
	}
	raw[0] = 'X' // the order keeps its own copy
	if o.Raw[0] != '{' {
		t.Error("Raw shares the caller's buffer")
	}
}

func TestDecodeOrderID(t *testing.T) {
	for _, tc := range []struct {
		body, id string
		idOnly   bool
	}{
		{`{"orderId":"44212809"}`, "44212809", true},
		{`{"orderId":44212809}`, "44212809", true},
		{`{"orderId":" A-1 "}`, "A-1", true},
		{`{"orderId":1.50}`, "1.50", true},
		{`{"orderId":"1","x":null}`, "1", false},
		{`{"orderId":"1","orderId":"2"}`, "2", true},
		{" \n{\"orderId\":\"7\",\"items\":[]}\n", "7", false},
	} {
		o, err := Decode([]byte(tc.body))
		if err != nil {
			t.Errorf("Decode(%q) = %v", tc.body, err)
			continue
		}
		if o.ID != tc.id || o.IDOnly != tc.idOnly {
			t.Errorf("Decode(%q) = ID %q IDOnly %v, want %q %v", tc.body, o.ID, o.IDOnly, tc.id, tc.idOnly)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		body    string
		notJSON bool
		reason  string
	}{
		{"", true, "empty body"},
		{"  \n", true, "empty body"},
		{"orderId=1", true, ""},
		{`{"orderId":"1"`, true, ""},
		{`{"orderId":"1"} {}`, true, "data after"},
		{"{\"orderId\":\"\xff\"}", true, "invalid UTF-8"},
		{"{\"orderId\":\"1\x00\"}", true, ""},
		{`[]`, false, "array, not an object"},
		{`"44212809"`, false, "string, not an object"},
		{`null`, false, "null, not an object"},
		{`{}`, false, "missing orderId"},
		{`{"order_id":"1"}`, false, "missing orderId"},
		{`{"orderId":""}`, false, "empty string"},
		{`{"orderId":"  "}`, false, "empty string"},
		{`{"orderId":null}`, false, "orderId is null"},
		{`{"orderId":true}`, false, "orderId is a boolean"},
		{`{"orderId":{"id":1}}`, false, "orderId is an object"},
		{`{"orderId":[1]}`, false, "orderId is an array"},
	} {
		_, err := Decode([]byte(tc.body))
		var ie *InvalidError
		switch {
		case err == nil:
			t.Errorf("Decode(%q) accepted it", tc.body)
			continue
		case tc.notJSON && !errors.Is(err, ErrNotJSON):
			t.Errorf("Decode(%q) = %v, want ErrNotJSON", tc.body, err)
		case !tc.notJSON && !errors.As(err, &ie):
			t.Errorf("Decode(%q) = %T %v, want *InvalidError", tc.body, err, err)
		case tc.notJSON && errors.As(err, &ie):
			t.Errorf("Decode(%q) is both not JSON and invalid", tc.body)
		}
		if !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("Decode(%q) = %q, want it to say %q", tc.body, err, tc.reason)
		}
	}
}

func TestKeyIsCanonicalContent(t *testing.T) {
	key := func(s string) [32]byte {
		t.Helper()
		o, err := Decode([]byte(s))
		if err != nil {
			t.Fatalf("Decode(%q) = %v", s, err)
		}
		return o.Key
	}
	base := key(`{"orderId":"1","orderTotal":500.00,"items":[{"sku":"A","quantity":1}],"note":"A<b>"}`)
	same := []string{
		`{ "items" : [ { "quantity" : 1 , "sku" : "A" } ] , "note" : "\u0041\u003cb>", "orderTotal":500.00, "orderId":"1" }`,
		"{\n\t\"orderId\": \"1\",\n\t\"orderTotal\": 500.00,\n\t\"note\": \"A<b>\",\n\t\"items\": [{\"sku\": \"A\", \"quantity\": 1}]\n}\n",
		`{"orderId":"1","orderTotal":1,"orderTotal":500.00,"items":[{"sku":"A","quantity":1}],"note":"A<b>"}`,
	}
	for _, s := range same {
		if key(s) != base {
			t.Errorf("Key(%q) differs from the same order in another layout", s)
		}
	}
	different := []string{
		`{"orderId":"1","orderTotal":500.0,"items":[{"sku":"A","quantity":1}],"note":"A<b>"}`,
		`{"orderId":"1","orderTotal":500.00,"items":[{"sku":"A","quantity":2}],"note":"A<b>"}`,
		`{"orderId":"1","orderTotal":500.00,"items":[{"sku":"A","quantity":1}],"note":"A<b> "}`,
		`{"orderId":1,"orderTotal":500.00,"items":[{"sku":"A","quantity":1}],"note":"A<b>"}`,
		`{"orderId":"1","orderTotal":500.00,"items":[{"sku":"A","quantity":1}],"note":"A<b>","x":null}`,
	}
	for _, s := range different {
		if key(s) == base {
			t.Errorf("Key(%q) equals a different order's", s)
		}
	}
	c, err := Canonical([]byte(`{ "b": [1.0, {"z":1,"a":"<"}], "a": 1e3 }`))
	if err != nil || string(c) != `{"a":1e3,"b":[1.0,{"a":"<","z":1}]}` {
		t.Errorf("Canonical = %s, %v", c, err)
	}
}

func TestText(t *testing.T) {
	o, err := Decode(seedOrder(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
		ok         bool
	}{
		{"orderId", "44212809", true},
		{"orderTotal", "1000.0", true},
		{"isCOD", "1", true},
		{"thirdPartyShipping", "false", true},
		{"shippingAddress.city", "South West Delhi", true},
		{"items.0.invoiceUrl", "https://storage.googleapis.com/invoicefiles-staging/invoice/TestLabel359777119-1702992503756.pdf", true},
		{"items.1.lineItemSequenceNumber", "2", true},
		{"items.0.returnPolicy", `{"isReturnable":true}`, true},
		{"items.0.forwardTrackingTimeline.statusLog.3.status", "failed_delivery", true},
		{"riskScoreReasons.1", "Suspicious behaviour", true},
		{"shippingAddress.addressLine2", "", false}, // empty string: no value
		{"items.2.sku", "", false},
		{"items.-1.sku", "", false},
		{"items.+0.sku", "", false},
		{"items.x", "", false},
		{"orderId.x", "", false},
		{"nope", "", false},
		{"", "", false},
		{"shippingAddress.", "", false},
	} {
		got, ok := o.Text(tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Text(%q) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
	if n, ok := o.Number("orderTotal"); !ok || n != "1000.0" {
		t.Errorf("Number(orderTotal) = %q, %v", n, ok)
	}
	if _, ok := o.Number("paymentType"); ok {
		t.Error("Number(paymentType) accepted text")
	}
	if got := o.Len("items"); got != 2 {
		t.Errorf("Len(items) = %d", got)
	}
}

func TestNumberFromString(t *testing.T) {
	o, err := Decode([]byte(`{"orderId":"1","a":"500.00","b":" 7 ","c":"5,00","d":"01","e":"1e","f":"-0.5E+3"}`))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"a": "500.00", "b": "7", "c": "", "d": "", "e": "", "f": "-0.5E+3"} {
		got, ok := o.Number(path)
		if string(got) != want || ok != (want != "") {
			t.Errorf("Number(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
}

func TestItemsCount(t *testing.T) {
	for _, tc := range []struct {
		body, want string
		ok         bool
	}{
		{`{"orderId":1,"items":[{"quantity":2},{"quantity":3}]}`, "5", true},
		{`{"orderId":1,"items":[{"quantity":"2"},{"quantity":1}]}`, "3", true},
		{`{"orderId":1,"items":[]}`, "0", true},
		{`{"orderId":1}`, "", false},
		{`{"orderId":1,"items":{}}`, "", false},
		{`{"orderId":1,"items":[{"quantity":1},{}]}`, "", false},
		{`{"orderId":1,"items":[{"quantity":1.5}]}`, "", false},
		{`{"orderId":1,"items":[{"quantity":-1}]}`, "", false},
		{`{"orderId":1,"items":[{"quantity":4611686018427387904},{"quantity":4611686018427387904}]}`, "", false},
	} {
		o, err := Decode([]byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := o.ItemsCount()
		if got != tc.want || ok != tc.ok {
			t.Errorf("ItemsCount(%s) = %q, %v; want %q, %v", tc.body, got, ok, tc.want, tc.ok)
		}
	}
	o, _ := Decode(seedOrder(t))
	if got, _ := o.ItemsCount(); got != "2" {
		t.Errorf("seed ItemsCount = %q, want 2", got)
	}
}

func TestDate(t *testing.T) {
	casa, err := time.LoadLocation("Africa/Casablanca")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := Decode(seedOrder(t))
	got, err := o.Date(casa)
	if err != nil {
		t.Fatal(err)
	}
	// Morocco keeps UTC+1 outside Ramadan: 09:22:09 there is 08:22:09 UTC.
	if want := time.Date(2023, 12, 19, 8, 22, 9, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Date(Africa/Casablanca) = %v, want %v", got, want)
	}
	if got, _ := o.Date(nil); !got.Equal(time.Date(2023, 12, 19, 9, 22, 9, 0, time.UTC)) {
		t.Errorf("Date(nil) = %v, want it read as UTC", got)
	}
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2023-12-19 09:22:09", time.Date(2023, 12, 19, 9, 22, 9, 0, time.UTC)},
		{"2023-12-19 09:22:09.123", time.Date(2023, 12, 19, 9, 22, 9, 123e6, time.UTC)},
		{"2023-12-19T09:22:09", time.Date(2023, 12, 19, 9, 22, 9, 0, time.UTC)},
		{"2023-12-19T09:22:09+05:30", time.Date(2023, 12, 19, 3, 52, 9, 0, time.UTC)},
	} {
		got, err := ParseDate(tc.in, time.UTC)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseDate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0000-00-00 00:00:00", "19/12/2023", "2023-12-19"} {
		if _, err := ParseDate(bad, time.UTC); err == nil {
			t.Errorf("ParseDate(%q) accepted it", bad)
		}
	}
	noDate, _ := Decode([]byte(`{"orderId":1}`))
	if _, err := noDate.Date(time.UTC); err == nil || !strings.Contains(err.Error(), "orderDate is missing") {
		t.Errorf("Date without orderDate = %v", err)
	}
}

func TestPhone(t *testing.T) {
	seed, _ := Decode(seedOrder(t))
	if got, err := seed.WhatsAppID("MA"); err != nil || got != "919711166382" {
		t.Errorf("seed WhatsAppID = %q, %v; want 919711166382 (countryCode IN wins over MA)", got, err)
	}
	if got, err := seed.E164(""); err != nil || got != "+919711166382" {
		t.Errorf("seed E164 = %q, %v", got, err)
	}
	for _, tc := range []struct {
		addr, region, want, errText string
	}{
		{`{"contactPhone":"0612345678"}`, "MA", "212612345678", ""},
		{`{"contactPhone":"612345678","countryCode":"ma"}`, "", "212612345678", ""},
		{`{"contactPhone":612345678,"countryCode":"MA"}`, "", "212612345678", ""},
		{`{"contactPhone":"06 12 34 56 78","countryCode":"Morocco"}`, "MA", "212612345678", ""},
		{`{"contactPhone":"+33 6 12 34 56 78","countryCode":"MA"}`, "MA", "33612345678", ""},
		{`{"contactPhone":"0612345678"}`, "", "", "with no region"},
		{`{"contactPhone":"12"}`, "MA", "", "***"},
		{`{"contactPhone":"0612345"}`, "MA", "", "***345 is not a valid number"},
		{`{"contactPhone":"call me"}`, "MA", "", "cannot be parsed"},
		{`{"contactPhone":""}`, "MA", "", "missing"},
		{`{}`, "MA", "", "missing"},
	} {
		o, err := Decode([]byte(`{"orderId":1,"shippingAddress":` + tc.addr + `}`))
		if err != nil {
			t.Fatal(err)
		}
		got, err := o.WhatsAppID(tc.region)
		switch {
		case tc.errText == "" && (err != nil || got != tc.want):
			t.Errorf("WhatsAppID(%s, %q) = %q, %v; want %q", tc.addr, tc.region, got, err, tc.want)
		case tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText)):
			t.Errorf("WhatsAppID(%s, %q) = %q, %v; want an error saying %q", tc.addr, tc.region, got, err, tc.errText)
		case err != nil && strings.Contains(err.Error(), "12345678"):
			t.Errorf("WhatsAppID(%s) error shows the number: %v", tc.addr, err)
		}
	}
}

func TestEmail(t *testing.T) {
	for body, want := range map[string]string{
		`{"orderId":1,"shippingAddress":{"email":"s@x.ma"},"billingAddress":{"email":"b@x.ma"}}`: "s@x.ma",
		`{"orderId":1,"shippingAddress":{"email":" "},"billingAddress":{"email":"b@x.ma"}}`:      "b@x.ma",
		`{"orderId":1,"billingAddress":{"email":"b@x.ma"}}`:                                      "b@x.ma",
		`{"orderId":1}`: "",
	} {
		o, _ := Decode([]byte(body))
		if got := o.Email(); got != want {
			t.Errorf("Email(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestMaskPhone(t *testing.T) {
	for in, want := range map[string]string{"9711166382": "***382", "12": "***", "+212 600": "***600", "abcdef": "***"} {
		if got := MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
	}
}
