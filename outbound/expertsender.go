package outbound

import (
	"context"
	"net/http"
	"strings"

	"github.com/statusbridge/statusbridge/config"
)

// ExpertSender sends order statuses to ExpertSender CDP:
// PUT {base_url}/orders/status with x-api-key. A body with an `errors`
// property is a failure whatever the status code.
type ExpertSender struct {
	cfg    config.ExpertSender
	client *http.Client
	red    redaction
}

func (e *ExpertSender) setRedaction(r redaction) { e.red = r }

// NewExpertSender builds the client; conns sizes its connection pool.
func NewExpertSender(cfg config.ExpertSender, conns int) *ExpertSender {
	return &ExpertSender{cfg: cfg, client: newHTTPClient(cfg.Timeout.D(), conns)}
}

// ExpertSender needs only the delivery (order id and status).
func (e *ExpertSender) eventless() {}

type expertSenderStatus struct {
	OrderID     string `json:"orderId"`
	OrderStatus string `json:"orderStatus"`
	WebsiteID   int    `json:"websiteId,omitempty"`
}

// Send puts the delivery's status.
func (e *ExpertSender) Send(ctx context.Context, m *Message) (Response, error) {
	d := m.Delivery
	return call{
		client:  e.client,
		method:  http.MethodPut,
		url:     strings.TrimRight(e.cfg.BaseURL, "/") + "/orders/status",
		headers: map[string]string{"x-api-key": e.cfg.APIKey},
		body:    expertSenderStatus{OrderID: d.OrderID, OrderStatus: d.Status, WebsiteID: e.cfg.WebsiteID},
		failKey: "errors",
		secrets: append([]string{e.cfg.APIKey}, e.red.values...),
	}.do(ctx)
}
