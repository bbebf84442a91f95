package orders

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// ErrNoPhone is returned (wrapped) by Phone when the order has no
// shippingAddress.contactPhone.
var ErrNoPhone = errors.New("shippingAddress.contactPhone is missing")

// Phone parses the customer's phone with libphonenumber: the order system
// writes shippingAddress.contactPhone in national format ("9711166382"), so it
// is read in the region of shippingAddress.countryCode when that is a known
// ISO 3166 region code, else in defaultRegion (targets.order_system.phone_region).
// A number written with its country code ("+212…", "00212…") is read as such.
// A number that cannot be parsed, or is not a valid number, is an error whose
// message shows only its last three digits.
func (o *Order) Phone(defaultRegion string) (*phonenumbers.PhoneNumber, error) {
	raw, ok := o.Text("shippingAddress.contactPhone")
	raw = strings.TrimSpace(raw)
	if !ok || raw == "" {
		return nil, ErrNoPhone
	}
	region := strings.ToUpper(strings.TrimSpace(defaultRegion))
	if cc, ok := o.Text("shippingAddress.countryCode"); ok {
		cc = strings.ToUpper(strings.TrimSpace(cc))
		if phonenumbers.GetCountryCodeForRegion(cc) != 0 {
			region = cc
		}
	}
	num, err := phonenumbers.Parse(raw, region)
	if err != nil {
		where := "region " + region
		if region == "" {
			where = "no region (no known shippingAddress.countryCode, no phone_region)"
		}
		return nil, fmt.Errorf("shippingAddress.contactPhone %s cannot be parsed with %s", MaskPhone(raw), where)
	}
	if !phonenumbers.IsValidNumber(num) {
		return nil, fmt.Errorf("shippingAddress.contactPhone %s is not a valid number of region %s", MaskPhone(raw), orUnknown(phonenumbers.GetRegionCodeForNumber(num), region))
	}
	return num, nil
}

// E164 is the customer's phone in E.164 ("+919711166382"); see Phone.
func (o *Order) E164(defaultRegion string) (string, error) {
	num, err := o.Phone(defaultRegion)
	if err != nil {
		return "", err
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}

// WhatsAppID is the customer's WhatsApp number as Digishare wants it: digits
// with the country code and no "+" ("919711166382"); see Phone.
func (o *Order) WhatsAppID(defaultRegion string) (string, error) {
	s, err := o.E164(defaultRegion)
	return strings.TrimPrefix(s, "+"), err
}

// MaskPhone keeps the last three characters of a phone number for messages
// and logs ("***382").
func MaskPhone(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= 3 {
		return "***"
	}
	tail := s[len(s)-3:]
	for _, r := range tail {
		if r < '0' || r > '9' {
			return "***"
		}
	}
	return "***" + tail
}

func orUnknown(s, fallback string) string {
	if s == "" || s == "ZZ" {
		if fallback == "" {
			return "unknown"
		}
		return fallback
	}
	return s
}

// MaskEmail keeps an email's first character and its domain for messages and
// logs ("a***@example.com"); "" stays "".
func MaskEmail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" {
		return "***"
	}
	_, size := utf8.DecodeRuneInString(local)
	return local[:size] + "***@" + domain
}
