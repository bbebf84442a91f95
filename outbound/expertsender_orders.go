package outbound

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/orders"
)

// ExpertSenderOrdersRequest is the body of ExpertSender's POST /orders.
type ExpertSenderOrdersRequest struct {
	Mode    string              `json:"mode"`              // Add | AddOrReplace
	MatchBy string              `json:"matchBy,omitempty"` // e.g. Email
	Data    []ExpertSenderOrder `json:"data"`
}

// ExpertSenderOrder is one order of POST /orders.
type ExpertSenderOrder struct {
	ID              string                  `json:"id"`   // max 128
	Date            string                  `json:"date"` // RFC 3339
	TimeZone        string                  `json:"timeZone,omitempty"`
	WebsiteID       int                     `json:"websiteId,omitempty"`
	Status          string                  `json:"status,omitempty"`
	Currency        string                  `json:"currency,omitempty"`
	TotalValue      json.Number             `json:"totalValue"` // as written in the order
	Customer        ExpertSenderCustomer    `json:"customer"`
	Products        []ExpertSenderProduct   `json:"products"`
	OrderAttributes []ExpertSenderAttribute `json:"orderAttributes,omitempty"`
}

// ExpertSenderCustomer identifies the customer of an order.
type ExpertSenderCustomer struct {
	Email string `json:"email,omitempty"` // max 320
	Phone string `json:"phone,omitempty"` // E.164, max 20
}

// ExpertSenderProduct is one line of an order.
type ExpertSenderProduct struct {
	ID       string      `json:"id"`    // max 128
	Name     string      `json:"name"`  // max 2048
	Price    json.Number `json:"price"` // as written in the order
	Quantity int64       `json:"quantity"`
	ImageURL string      `json:"imageUrl,omitempty"` // max 2048
}

// ExpertSenderAttribute is a name and a value.
type ExpertSenderAttribute struct {
	Name  string `json:"name"` // max 256
	Value string `json:"value"`
}

// expertSenderOrderAttributes are the order's fields sent as orderAttributes
// when present, under their own names.
var expertSenderOrderAttributes = []string{"paymentType", "shipMethod", "channelSlug"}

// BuildExpertSenderOrder makes the POST /orders body of an order: id ←
// orderId; date ← orderDate read in loc (intake.time_zone), as RFC 3339;
// totalValue ← orderTotal; currency, timeZone, websiteId from cfg; status ←
// status, else orders.status; customer ← email (shipping, else billing
// address) and phone in E.164 (shippingAddress.contactPhone read in its
// countryCode, else phoneRegion; left out when it does not parse); products
// ← items[] (id ← sku, name ← productName, price ← customerPrice, quantity,
// imageUrl ← productImageUrl); orderAttributes ← paymentType, shipMethod,
// channelSlug where present.
//
// A missing required value, or one over ExpertSender's length limits, is a
// permanent *Error naming the field; nothing is to be sent.
func BuildExpertSenderOrder(cfg config.ExpertSender, loc *time.Location, phoneRegion string, o *orders.Order, status string) (ExpertSenderOrdersRequest, error) {
	oc := config.ExpertSenderOrders{Mode: "AddOrReplace", Status: "placed"}
	if cfg.Orders != nil {
		oc = *cfg.Orders
	}
	fail := func(format string, args ...any) (ExpertSenderOrdersRequest, error) {
		return ExpertSenderOrdersRequest{}, permanent("ExpertSender order not sent: "+format, args...)
	}
	if status == "" {
		status = oc.Status
	}
	ord := ExpertSenderOrder{ID: o.ID, TimeZone: oc.TimeZone, WebsiteID: cfg.WebsiteID, Status: status, Currency: oc.Currency}
	date, err := o.Date(loc)
	if err != nil {
		return fail("%v", err)
	}
	ord.Date = date.Format(time.RFC3339Nano)
	total, ok := o.Number("orderTotal")
	if !ok {
		return fail("orderTotal is missing or not a number")
	}
	ord.TotalValue = total
	ord.Customer.Email = o.Email()
	if phone, err := o.E164(phoneRegion); err == nil {
		ord.Customer.Phone = phone
	} else if strings.EqualFold(oc.MatchBy, "Phone") {
		return fail("customers are matched by phone: %v", err)
	}
	switch {
	case strings.EqualFold(oc.MatchBy, "Email") && ord.Customer.Email == "":
		return fail("customers are matched by email, and the order has none (shippingAddress.email, billingAddress.email)")
	case ord.Customer.Email == "" && ord.Customer.Phone == "":
		return fail("the customer has neither an email nor a phone that parses")
	}
	ord.Products = []ExpertSenderProduct{}
	for i := range o.Len("items") {
		p := "items." + strconv.Itoa(i) + "."
		field := fmt.Sprintf("items[%d].", i)
		var pr ExpertSenderProduct
		if pr.ID, ok = o.Text(p + "sku"); !ok {
			return fail("%ssku is missing", field)
		}
		if pr.Name, ok = o.Text(p + "productName"); !ok {
			return fail("%sproductName is missing", field)
		}
		if pr.Price, ok = o.Number(p + "customerPrice"); !ok {
			return fail("%scustomerPrice is missing or not a number", field)
		}
		q, ok := o.Number(p + "quantity")
		n, err := strconv.ParseInt(q.String(), 10, 64)
		if !ok || err != nil || n < 1 || n > 2147483647 {
			return fail("%squantity is not a whole number from 1 to 2147483647", field)
		}
		pr.Quantity = n
		pr.ImageURL, _ = o.Text(p + "productImageUrl")
		ord.Products = append(ord.Products, pr)
	}
	for _, k := range expertSenderOrderAttributes {
		if v, ok := o.Text(k); ok {
			ord.OrderAttributes = append(ord.OrderAttributes, ExpertSenderAttribute{Name: k, Value: v})
		}
	}
	if err := checkExpertSenderLimits(&ord); err != nil {
		return ExpertSenderOrdersRequest{}, err
	}
	return ExpertSenderOrdersRequest{Mode: oc.Mode, MatchBy: oc.MatchBy, Data: []ExpertSenderOrder{ord}}, nil
}

// checkExpertSenderLimits checks every length limit of ExpertSender's
// Orders API (in characters).
func checkExpertSenderLimits(o *ExpertSenderOrder) error {
	type limit struct {
		field, value string
		max          int
	}
	limits := []limit{
		{"id (orderId)", o.ID, 128},
		{"timeZone", o.TimeZone, 100},
		{"customer.email", o.Customer.Email, 320},
		{"customer.phone", o.Customer.Phone, 20},
	}
	for i, p := range o.Products {
		f := fmt.Sprintf("products[%d].", i)
		limits = append(limits,
			limit{f + "id (items[" + strconv.Itoa(i) + "].sku)", p.ID, 128},
			limit{f + "name (items[" + strconv.Itoa(i) + "].productName)", p.Name, 2048},
			limit{f + "imageUrl (items[" + strconv.Itoa(i) + "].productImageUrl)", p.ImageURL, 2048})
	}
	for i, a := range o.OrderAttributes {
		limits = append(limits, limit{fmt.Sprintf("orderAttributes[%d].name", i), a.Name, 256})
	}
	for _, l := range limits {
		if n := utf8.RuneCountInString(l.value); n > l.max {
			return permanent("ExpertSender order not sent: %s is %d characters, over ExpertSender's %d", l.field, n, l.max)
		}
	}
	if o.Currency != "" && utf8.RuneCountInString(o.Currency) != 3 {
		return permanent("ExpertSender order not sent: currency %q is not exactly 3 characters", o.Currency)
	}
	return nil
}

// ExpertSenderOrders registers orders with ExpertSender CDP: POST
// {base_url}/orders with x-api-key. A body with an `errors` property is a
// failure whatever the status code.
type ExpertSenderOrders struct {
	cfg         config.ExpertSender
	loc         *time.Location
	phoneRegion string
	client      *http.Client
}

// NewExpertSenderOrders builds the client. loc is intake.time_zone's
// location (the zone of orderDate), phoneRegion
// targets.order_system.phone_region; conns sizes its connection pool.
func NewExpertSenderOrders(cfg config.ExpertSender, loc *time.Location, phoneRegion string, conns int) *ExpertSenderOrders {
	return &ExpertSenderOrders{cfg: cfg, loc: loc, phoneRegion: phoneRegion, client: newHTTPClient(cfg.Timeout.D(), conns)}
}

// Upsert registers the order with status ("" = orders.status). 201/2xx is
// done; 400, 401, other 4xx and an `errors` body are permanent; 408, 429 and
// 5xx are retried (honouring Retry-After). An order that cannot be built
// (see BuildExpertSenderOrder) fails permanently without a request.
func (e *ExpertSenderOrders) Upsert(ctx context.Context, o *orders.Order, status string) (Response, error) {
	body, err := BuildExpertSenderOrder(e.cfg, e.loc, e.phoneRegion, o, status)
	if err != nil {
		return Response{}, err
	}
	return call{
		client:  e.client,
		method:  http.MethodPost,
		url:     strings.TrimRight(e.cfg.BaseURL, "/") + "/orders",
		headers: map[string]string{"x-api-key": e.cfg.APIKey},
		body:    body,
		failKey: "errors",
		secrets: []string{e.cfg.APIKey},
	}.do(ctx)
}
