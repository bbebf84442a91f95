package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/orders"
)

// maxOrderDocument bounds an order read from the order system.
const maxOrderDocument = 8 << 20

// OrderFetcher gets orders from the order system:
// GET {base_url}/_ah/api/esb/v2/order/{orderId}, with the order system's
// token as Authorization: Bearer when one is set. It is the delivery step of
// an intake that gave only an orderId.
type OrderFetcher struct {
	cfg    config.OrderSystem
	client *http.Client
}

// NewOrderFetcher builds the fetcher on the order system's settings; conns
// sizes its connection pool.
func NewOrderFetcher(cfg config.OrderSystem, conns int) *OrderFetcher {
	return &OrderFetcher{cfg: cfg, client: newHTTPClient(cfg.Timeout.D(), conns)}
}

// Fetch returns the order. Errors: permanent for a 404 (the order is
// unknown), another 4xx or 3xx, a body with an `error` key, an answer that is
// not an order, is another order, holds nothing but orderId or is larger
// than 8 MiB; retryable for 408, 429 and 5xx (honouring Retry-After),
// timeouts and network errors.
func (f *OrderFetcher) Fetch(ctx context.Context, orderID string) (*orders.Order, Response, error) {
	secrets := []string{f.cfg.Token}
	red := func(s string) string { return redactAll(s, secrets) }
	u := strings.TrimRight(f.cfg.BaseURL, "/") + "/_ah/api/esb/v2/order/" + url.PathEscape(orderID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, Response{}, &Error{Permanent: true, Msg: red("build request: " + err.Error())}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "statusbridge")
	if f.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+f.cfg.Token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, Response{}, &Error{Msg: red("get the order: " + transportMessage(err))}
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxOrderDocument+1))
	r := Response{StatusCode: resp.StatusCode, Excerpt: red(excerpt(body))}
	if err := classify(resp, body, "error", r.Excerpt); err != nil {
		var oe *Error
		if errors.As(err, &oe) {
			oe.Msg = red(oe.Msg)
			if oe.StatusCode == http.StatusNotFound {
				oe.Msg = "order unknown to the order system: " + oe.Msg
			}
		}
		return nil, r, err
	}
	if readErr != nil {
		return nil, r, &Error{StatusCode: resp.StatusCode, Msg: red("read the order: " + transportMessage(readErr))}
	}
	if len(body) > maxOrderDocument {
		return nil, r, &Error{Permanent: true, StatusCode: resp.StatusCode, Msg: fmt.Sprintf("the order system's answer is larger than %d bytes", maxOrderDocument)}
	}
	o, err := orders.Decode(body)
	if err != nil {
		return nil, r, &Error{Permanent: true, StatusCode: resp.StatusCode, Msg: "the order system's answer is not an order: " + err.Error()}
	}
	switch {
	case o.ID != strings.TrimSpace(orderID):
		return nil, r, &Error{Permanent: true, StatusCode: resp.StatusCode,
			Msg: fmt.Sprintf("the order system answered order %q for order %q", o.ID, orderID)}
	case o.IDOnly:
		return nil, r, &Error{Permanent: true, StatusCode: resp.StatusCode, Msg: "the order system's answer holds nothing but orderId"}
	}
	return o, r, nil
}
