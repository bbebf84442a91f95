package outbound

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/internal/fake"
)

func casablanca(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Africa/Casablanca")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func esOrdersConfig(base string) config.ExpertSender {
	return config.ExpertSender{BaseURL: base, APIKey: "es-key-123456", WebsiteID: 3,
		Orders: &config.ExpertSenderOrders{Mode: "AddOrReplace", MatchBy: "Email", Currency: "MAD", TimeZone: "Morocco Standard Time", Status: "placed"},
		Limits: config.Limits{Timeout: config.Duration(2 * time.Second)}}
}

func TestBuildExpertSenderOrderFromSeed(t *testing.T) {
	req, err := BuildExpertSenderOrder(esOrdersConfig(""), casablanca(t), "MA", seedOrder(t), "")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := marshal(req)
	product := `{"id":"01FIJ3FOD5U","name":"Roasted Makhanas - Roasted In Olive Oil","price":150.0,"quantity":1,"imageUrl":"https://cdn.filestackcontent.com/7LEEmRndSvucV186ifYy"}`
	want := `{"mode":"AddOrReplace","matchBy":"Email","data":[{"id":"44212809","date":"2023-12-19T09:22:09+01:00",` +
		`"timeZone":"Morocco Standard Time","websiteId":3,"status":"placed","currency":"MAD","totalValue":1000.0,` +
		`"customer":{"email":"mituj@eshopbox.com","phone":"+919711166382"},"products":[` + product + `,` + product + `],` +
		`"orderAttributes":[{"name":"paymentType","value":"COD"},{"name":"shipMethod","value":"STD"},{"name":"channelSlug","value":"dfc72"}]}]}`
	if string(got) != want {
		t.Errorf("body =\n%s\nwant\n%s", got, want)
	}
	req, _ = BuildExpertSenderOrder(esOrdersConfig(""), time.UTC, "MA", seedOrder(t), "paid")
	if d := req.Data[0]; d.Status != "paid" || d.Date != "2023-12-19T09:22:09Z" {
		t.Errorf("status %q, date %q; want the caller's status and the date read in UTC", d.Status, d.Date)
	}
	cfg := esOrdersConfig("")
	cfg.Orders = &config.ExpertSenderOrders{Mode: "Add", Status: "placed"}
	cfg.WebsiteID = 0
	req, _ = BuildExpertSenderOrder(cfg, time.UTC, "MA", seedOrder(t), "")
	got, _ = marshal(req)
	for _, absent := range []string{"matchBy", "timeZone", "websiteId", "currency"} {
		if strings.Contains(string(got), `"`+absent+`"`) {
			t.Errorf("unset %s was sent: %s", absent, got)
		}
	}
}

func TestBuildExpertSenderOrderCustomer(t *testing.T) {
	for _, tc := range []struct {
		name, addr, matchBy string
		email, phone, fails string
	}{
		{"billing email", `"shippingAddress":{"contactPhone":"0612345678","countryCode":"MA"},"billingAddress":{"email":"b@x.ma"}`, "Email", "b@x.ma", "+212612345678", ""},
		{"phone that does not parse is left out", `"shippingAddress":{"contactPhone":"n/a","email":"s@x.ma"}`, "Email", "s@x.ma", "", ""},
		{"matched by email without one", `"shippingAddress":{"contactPhone":"0612345678"}`, "Email", "", "", "matched by email"},
		{"matched by phone without one", `"shippingAddress":{"email":"s@x.ma"}`, "Phone", "", "", "matched by phone"},
		{"phone alone", `"shippingAddress":{"contactPhone":"0612345678"}`, "", "", "+212612345678", ""},
		{"neither", `"shippingAddress":{}`, "", "", "", "neither an email nor a phone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := esOrdersConfig("")
			cfg.Orders.MatchBy = tc.matchBy
			o := decodeOrder(t, `{"orderId":"1","orderDate":"2024-01-02 03:04:05","orderTotal":"10.50","items":[],`+tc.addr+`}`)
			req, err := BuildExpertSenderOrder(cfg, time.UTC, "MA", o, "")
			if tc.fails != "" {
				var oe *Error
				if !errors.As(err, &oe) || !oe.Permanent || !strings.Contains(oe.Msg, tc.fails) {
					t.Errorf("Build = %v, want permanent saying %q", err, tc.fails)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c := req.Data[0].Customer; c.Email != tc.email || c.Phone != tc.phone {
				t.Errorf("customer = %+v, want %q %q", c, tc.email, tc.phone)
			}
			if tv := req.Data[0].TotalValue; tv != "10.50" {
				t.Errorf("totalValue = %q, want 10.50 as written", tv)
			}
		})
	}
}

func TestBuildExpertSenderOrderLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("é", n) } // characters, not bytes
	item := func(sku, name, image string) string {
		b, _ := json.Marshal(map[string]any{"sku": sku, "productName": name, "customerPrice": 1, "quantity": 1, "productImageUrl": image})
		return string(b)
	}
	base := func(id, email, items string) string {
		b, _ := json.Marshal(id)
		e, _ := json.Marshal(email)
		return `{"orderId":` + string(b) + `,"orderDate":"2024-01-02 03:04:05","orderTotal":1,"shippingAddress":{"email":` + string(e) + `},"items":[` + items + `]}`
	}
	ok := item("sku", "name", "https://x/i.png")
	for _, tc := range []struct {
		name, order, tz, says string
	}{
		{"at the limits", base(long(128), long(320), item(long(128), long(2048), long(2048))), long(100), ""},
		{"id", base(long(129), "a@b.c", ok), "", "id (orderId) is 129 characters, over ExpertSender's 128"},
		{"email", base("1", long(321), ok), "", "customer.email is 321 characters"},
		{"sku", base("1", "a@b.c", ok+","+item(long(129), "n", "")), "", "products[1].id (items[1].sku) is 129"},
		{"name", base("1", "a@b.c", item("s", long(2049), "")), "", "products[0].name (items[0].productName) is 2049"},
		{"image", base("1", "a@b.c", item("s", "n", long(2049))), "", "products[0].imageUrl (items[0].productImageUrl) is 2049"},
		{"time zone", base("1", "a@b.c", ok), long(101), "timeZone is 101 characters"},
		{"no date", `{"orderId":"1","orderTotal":1,"shippingAddress":{"email":"a@b.c"}}`, "", "orderDate is missing"},
		{"bad date", `{"orderId":"1","orderDate":"0000-00-00 00:00:00","orderTotal":1,"shippingAddress":{"email":"a@b.c"}}`, "", "orderDate:"},
		{"no total", `{"orderId":"1","orderDate":"2024-01-02 03:04:05","orderTotal":"n/a","shippingAddress":{"email":"a@b.c"}}`, "", "orderTotal is missing or not a number"},
		{"no sku", base("1", "a@b.c", `{"productName":"n","customerPrice":1,"quantity":1}`), "", "items[0].sku is missing"},
		{"no price", base("1", "a@b.c", `{"sku":"s","productName":"n","customerPrice":"free","quantity":1}`), "", "items[0].customerPrice"},
		{"zero quantity", base("1", "a@b.c", `{"sku":"s","productName":"n","customerPrice":1,"quantity":0}`), "", "items[0].quantity is not a whole number from 1"},
		{"huge quantity", base("1", "a@b.c", `{"sku":"s","productName":"n","customerPrice":1,"quantity":2147483648}`), "", "items[0].quantity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := esOrdersConfig("")
			cfg.Orders.TimeZone = tc.tz
			_, err := BuildExpertSenderOrder(cfg, time.UTC, "MA", decodeOrder(t, tc.order), "")
			var oe *Error
			switch {
			case tc.says == "" && err != nil:
				t.Errorf("Build at the limits = %v", err)
			case tc.says != "" && (!errors.As(err, &oe) || !oe.Permanent || !strings.Contains(oe.Msg, tc.says)):
				t.Errorf("Build = %v, want permanent saying %q", err, tc.says)
			}
		})
	}
	cfg := esOrdersConfig("")
	cfg.Orders.Currency = "MADX"
	if _, err := BuildExpertSenderOrder(cfg, time.UTC, "MA", seedOrder(t), ""); err == nil || !strings.Contains(err.Error(), "exactly 3") {
		t.Errorf("currency MADX = %v", err)
	}
}

func TestExpertSenderOrdersUpsert(t *testing.T) {
	srv := fake.NewServer(t, fake.Answer{Code: 201})
	es := NewExpertSenderOrders(esOrdersConfig(srv.URL+"/"), casablanca(t), "MA", 1)
	if _, err := es.Upsert(t.Context(), seedOrder(t), "paid"); err != nil {
		t.Fatalf("Upsert = %v", err)
	}
	r := srv.Requests()[0]
	want, _ := BuildExpertSenderOrder(esOrdersConfig(""), casablanca(t), "MA", seedOrder(t), "paid")
	wantBody, _ := marshal(want)
	if r.Method != "POST" || r.Path != "/orders" || r.Header.Get("x-api-key") != "es-key-123456" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s, x-api-key %q", r.Method, r.Path, r.Header.Get("x-api-key"))
	}
	if string(r.Body) != string(wantBody) {
		t.Errorf("body =\n%s\nwant\n%s", r.Body, wantBody)
	}
	for _, tc := range []struct {
		answer     fake.Answer
		permanent  bool
		retryAfter time.Duration
	}{
		{fake.Answer{Code: 400, Body: `{"title":"Bad Request","status":400,"substatus":"CustomerInvalidModelState","errors":["Customer not found"]}`}, true, 0},
		{fake.Answer{Code: 401, Body: `{"title":"Unauthorized"}`}, true, 0},
		{fake.Answer{Code: 200, Body: `{"errors":["Invalid currency"]}`}, true, 0},
		{fake.Answer{Code: 429, Header: map[string]string{"Retry-After": "3"}}, false, 3 * time.Second},
		{fake.Answer{Code: 500}, false, 0},
	} {
		srv := fake.NewServer(t, tc.answer)
		_, err := NewExpertSenderOrders(esOrdersConfig(srv.URL), time.UTC, "MA", 1).Upsert(t.Context(), seedOrder(t), "")
		var oe *Error
		if !errors.As(err, &oe) || oe.Permanent != tc.permanent || oe.RetryAfter != tc.retryAfter {
			t.Errorf("answer %d %s: %v, want permanent=%v", tc.answer.Code, tc.answer.Body, err, tc.permanent)
		}
		if oe != nil && strings.Contains(oe.Msg, "es-key-123456") {
			t.Errorf("message shows the API key: %s", oe.Msg)
		}
	}
	// An order that cannot be built sends nothing.
	srv = fake.NewServer(t)
	_, err := NewExpertSenderOrders(esOrdersConfig(srv.URL), time.UTC, "MA", 1).Upsert(t.Context(), decodeOrder(t, `{"orderId":"1"}`), "")
	if err == nil || len(srv.Requests()) != 0 {
		t.Errorf("Upsert of an order without date = %v with %d requests", err, len(srv.Requests()))
	}
}
