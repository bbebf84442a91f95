package config

import (
	"slices"
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:pass@h/db", "postgres://u:xxxxx@h/db"},
		{"postgresql://u:pass@h:5432/db?sslmode=require", "postgresql://u:xxxxx@h:5432/db?sslmode=require"},
		{"POSTGRES://u:pass@h/db", "POSTGRES://u:xxxxx@h/db"},
		{"postgres://u:p%40ss%2Fw@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://h/db", "postgres://h/db"},
		{"postgres:///db?host=/run/postgresql", "postgres:///db?host=/run/postgresql"},
		{"postgres://u:@h/db", "postgres://u:@h/db"},
		{"postgres://u@h/db?sslmode=disable&password=pass&x=1", "postgres://u@h/db?sslmode=disable&password=xxxxx&x=1"},
		{"postgres://u:a@h/db?password=b", "postgres://u:xxxxx@h/db?password=xxxxx"},
		{"postgres://u:p@ss@h/db", "postgres://u:xxxxx@h/db"},                             // unencoded @: the last one ends it
		{"postgres://u:pa/ss@h/db", "postgres://u:xxxxx@h/db"},                            // unencoded /
		{"postgres://u:pa?ss@h/db", "postgres://u:xxxxx@h/db"},                            // unencoded ?
		{"postgres://u:pa#ss@h/db", "postgres://u:xxxxx@h/db"},                            // unencoded #
		{"postgres://u:pass@h1:5432,h2:5432/db", "postgres://u:xxxxx@h1:5432,h2:5432/db"}, // multi-host
		{"postgres://u@h/db?sslpassword=kp", "postgres://u@h/db?sslpassword=xxxxx"},
		{"host=h user=u password=pass dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"host=h password = pass dbname=d", "host=h password = xxxxx dbname=d"},
		{"password='p a s s' host=h", "password=xxxxx host=h"},
		{`password='it\'s \\ here' host=h`, "password=xxxxx host=h"},
		{`password=bare\ space host=h`, "password=xxxxx host=h"},
		{"host=h password=", "host=h password="},
		{"host=h password='never closed host=x", "host=h password=xxxxx"},
		{"host=h = password=pass", "host=h = password=xxxxx"}, // unreadable: cut from password= on
		{"host=h sslpassword=kp", "host=h sslpassword=xxxxx"},
		{"host=h user=u", "host=h user=u"},
		{"", ""},
	} {
		if got := RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDSNSecrets(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"postgres://u:p%40ss@h/db", []string{"p%40ss", "p@ss"}},
		{"postgres://u@h/db?password=a%20b", []string{"a%20b", "a b"}},
		{"host=h password='it\\'s' dbname=d", []string{"'it\\'s'", "it\\'s", "it's"}},
		{"host=h password=plain", []string{"plain"}},
		{"host=h user=u", nil},
		{"postgres://u@h/db", nil},
	} {
		got := DSNSecrets(tc.in)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("DSNSecrets(%q) = %q, want it to contain %q", tc.in, got, w)
			}
		}
		if tc.want == nil && got != nil {
			t.Errorf("DSNSecrets(%q) = %q, want none", tc.in, got)
		}
	}
}

func TestCheckDSN(t *testing.T) {
	for _, ok := range []string{
		"postgres://u:p%40ss@db:5432/statusbridge?sslmode=require",
		"postgresql:///statusbridge?host=/run/postgresql",
		"host=db port=5432 user=statusbridge password='a b' dbname=statusbridge sslmode=verify-full",
		"host=/run/postgresql dbname=statusbridge",
	} {
		if err := checkDSN(ok); err != nil {
			t.Errorf("checkDSN(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"db.internal", "host=db oops", "host='db", "mysql://u@h/db", "postgres://u:p@h:port/db", "postgres://u:pa/ss@h/db"} {
		err := checkDSN(bad)
		if err == nil {
			t.Errorf("checkDSN(%q) = nil, want an error", bad)
			continue
		}
		if strings.Contains(err.Error(), "pa/ss") || strings.Contains(err.Error(), "oops") {
			t.Errorf("checkDSN(%q) = %v: it shows the DSN's text", bad, err)
		}
	}
}

func FuzzRedactDSN(f *testing.F) {
	for _, s := range []string{"postgres://u:pass@h/db", "host=h password='x y' dbname=d", "password=a\\ b", "postgres://u@h/db?password=p"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		// Redacting again finds nothing but what was put there: every
		// password the parser sees in the result is xxxxx.
		got := RedactDSN(dsn)
		spans, _ := passwordSpans(got)
		for _, sp := range spans {
			if v := got[sp.start:sp.end]; v != redacted {
				t.Fatalf("RedactDSN(%q) = %q still has a password %q", dsn, got, v)
			}
		}
	})
}
