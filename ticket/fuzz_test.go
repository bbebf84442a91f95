package ticket

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/statusbridge/statusbridge/orders"
)

// FuzzRender: no order panics Render; what renders is valid JSON with an
// external_id and a wa_id of digits, and every field it names as left out is
// absent; what does not render is an *Error. Seeds: testdata/fuzz/FuzzRender
// and the order of the fact sheet.
func FuzzRender(f *testing.F) {
	if raw, err := os.ReadFile("../orders/testdata/order.json"); err == nil {
		f.Add(raw, "MA", "media")
	}
	cfg := defaults(f)
	f.Fuzz(func(t *testing.T, raw []byte, region, media string) {
		o, err := orders.Decode(raw)
		if err != nil {
			return
		}
		tk, err := Render(cfg, o, region, media)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) || te.Field == "" || te.Reason == "" {
				t.Fatalf("Render error %T %v, want *Error with field and reason", err, err)
			}
			return
		}
		var got struct {
			ExternalID  string `json:"external_id"`
			Information struct {
				Third        map[string]string `json:"third"`
				CampaignData map[string]any    `json:"campaign_data"`
			} `json:"information"`
		}
		if err := json.Unmarshal(tk.Body, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", tk.Body, err)
		}
		if got.ExternalID == "" || !digits(got.Information.Third["wa_id"]) {
			t.Fatalf("rendered without external_id or wa_id: %s", tk.Body)
		}
		for _, field := range tk.Omitted {
			switch {
			case len(field) > 6 && field[:6] == "third.":
				if _, ok := got.Information.Third[field[6:]]; ok {
					t.Fatalf("%s named as left out but sent: %s", field, tk.Body)
				}
			case len(field) > 14 && field[:14] == "campaign_data.":
				if _, ok := got.Information.CampaignData[field[14:]]; ok {
					t.Fatalf("%s named as left out but sent: %s", field, tk.Body)
				}
			}
		}
		for k, v := range got.Information.CampaignData {
			if _, ok := v.(string); !ok && k != cfg.Invoice.Field {
				t.Fatalf("campaign_data.%s is not a string: %s", k, tk.Body)
			}
		}
	})
}
