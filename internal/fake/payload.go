package fake

import "encoding/json"

// Update describes a Digishare ticket.updated call for tests.
type Update struct {
	TicketID   string
	OrderID    string // external_id, sent as given
	StatusID   string // changes.ticket_status_id ("" = not in changes)
	DateStatus string // changes.date_status ("" = absent)
	TypeID     string
	Third      map[string]string
	Campaign   map[string]any // information.campaign_data (nil: items_count 5, order_total 500.00)
	Subject    string         // "" = "Order Confirmation"
}

// Payload returns the JSON body Digishare would send, shaped like the
// documented sample (extra unknown fields included).
func (u Update) Payload() []byte {
	changes := map[string]any{"updated_at": u.DateStatus}
	if u.DateStatus == "" {
		delete(changes, "updated_at")
	} else {
		changes["date_status"] = u.DateStatus
	}
	if u.StatusID != "" {
		changes["ticket_status_id"] = u.StatusID
	}
	third := u.Third
	if third == nil {
		third = map[string]string{"name": "Ahmed Alami", "email": "ahmed.alami@example.com",
			"wa_id": "212600000000", "ext_ref": "CUSTOMER-67890"}
	}
	campaign := u.Campaign
	if campaign == nil {
		campaign = map[string]any{"items_count": "5", "order_total": "500.00"}
	}
	subject := u.Subject
	if subject == "" {
		subject = "Order Confirmation"
	}
	typeID := u.TypeID
	if typeID == "" {
		typeID = "npvrxamq9l94y8dz"
	}
	body := map[string]any{
		"event": "ticket.updated",
		"data": map[string]any{
			"id": u.TicketID,
			"data": map[string]any{
				"id": u.TicketID, "external_id": u.OrderID, "subject": subject,
				"ticket_number": "342106", "type_ticket_id": typeID, "third_id": "hashed_third_id",
				"ticket_status_id": u.StatusID,
				"information": map[string]any{
					"third":         third,
					"campaign_data": campaign,
				},
				"priority_id": 2,
			},
			"wasRecentlyCreated": false,
			"changes":            changes,
		},
	}
	raw, err := json.Marshal(body)
	if err != nil {
		panic(err) // static shape: cannot fail
	}
	return raw
}
