package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"time"
)

// Sessions and CSRF tokens are signed, never stored: a key derived from the
// admin token signs them, so a session survives a restart and is good on
// every replica, and changing the token ends every session.
const (
	sessionCookie = "sb_session"
	loginCookie   = "sb_login" // a nonce the login form's CSRF token is bound to
	sessionTTL    = 12 * time.Hour
	cookiePath    = "/ui"
)

type keys struct{ session []byte }

func deriveKeys(token string) keys {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("statusbridge console session key v1"))
	return keys{session: m.Sum(nil)}
}

func (k keys) mac(parts ...[]byte) []byte {
	m := hmac.New(sha256.New, k.session)
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:])
		m.Write(p)
	}
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// newSession returns a session value: expiry and a random nonce, signed.
func (k keys) newSession(now time.Time) (string, error) {
	payload := make([]byte, 8+16)
	binary.BigEndian.PutUint64(payload, uint64(now.Add(sessionTTL).Unix()))
	if _, err := rand.Read(payload[8:]); err != nil {
		return "", err
	}
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(k.mac([]byte("session"), payload)), nil
}

// validSession reports whether v is a session this key signed that has not
// expired.
func (k keys) validSession(v string, now time.Time) bool {
	p, sig, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	payload, err1 := b64.DecodeString(p)
	mac, err2 := b64.DecodeString(sig)
	if err1 != nil || err2 != nil || len(payload) != 24 || !hmac.Equal(mac, k.mac([]byte("session"), payload)) {
		return false
	}
	return now.Unix() < int64(binary.BigEndian.Uint64(payload))
}

// csrfFor is the CSRF token of forms shown to a session (or, for the login
// form, to a login nonce).
func (k keys) csrfFor(purpose, value string) string {
	return b64.EncodeToString(k.mac([]byte("csrf:"+purpose), []byte(value)))
}

func (k keys) checkCSRF(purpose, value, got string) bool {
	if value == "" || got == "" {
		return false
	}
	return hmac.Equal([]byte(got), []byte(k.csrfFor(purpose, value)))
}

func randomNonce() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return b64.EncodeToString(b), nil
}

func (c *Console) cookie(r *http.Request, name, value string, maxAge time.Duration) *http.Cookie {
	ck := &http.Cookie{Name: name, Value: value, Path: cookiePath, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.proxies.HTTPS(r)}
	if maxAge < 0 {
		ck.MaxAge, ck.Expires = -1, time.Unix(0, 0)
	} else {
		ck.MaxAge, ck.Expires = int(maxAge.Seconds()), c.now().Add(maxAge)
	}
	return ck
}

// session returns the request's valid session value ("" when none).
func (c *Console) session(r *http.Request) string {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || !c.keys.validSession(ck.Value, c.now()) {
		return ""
	}
	return ck.Value
}
