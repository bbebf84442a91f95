package postgres

import "testing"

func TestText(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        "plain",
		"مرحبا 🎉":      "مرحبا 🎉",
		"a\x00b":       "a\uFFFDb",
		"bad \xff end": "bad \uFFFD end",
		"":             "",
	} {
		if got := text(in); got != want {
			t.Errorf("text(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJSONB(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{map[string]string{"k": "a\x00b"}, `{"k":"a\ufffdb"}`},
		{map[string]string{"k": `\u0000`}, `{"k":"\\u0000"}`}, // the six characters, escaped: kept
		{map[string]string{"k": "\\\x00"}, `{"k":"\\\ufffd"}`},
		{[]int(nil), ""},
		{[]int{}, `[]`},
	} {
		got, err := jsonb(c.in)
		if err != nil || string(got) != c.want {
			t.Errorf("jsonb(%#v) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
}
