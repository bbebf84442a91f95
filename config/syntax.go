package config

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The YAML parser reports a syntax error at the line of the construct it was
// parsing, counted from 0 (a flow mapping missing its '}' on line 79 comes
// back as "line 78"; a quote left open on line 12 as the block mapping around
// it, line 11), and names no column or key. syntaxProblem finds the line
// itself: the first line from which no prefix of the document parses any
// more, i.e. the line after the longest prefix that still parses. Then the
// column (an unclosed quote or bracket on that line, else its first
// character) and the nearest key path, read from the indentation of the
// lines above.

// maxLocateLines bounds the documents located line by line (each try parses
// a prefix); longer ones get the parser's own line.
const maxLocateLines = 3000

var lineInMessage = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem describes a document yaml.Unmarshal refused with err.
func syntaxProblem(data []byte, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	parserLine := 0
	if m := lineInMessage.FindStringSubmatch(err.Error()); m != nil {
		parserLine, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	line := 0
	if len(lines) <= maxLocateLines {
		line = firstBadLine(lines)
	}
	if line == 0 {
		line = parserLine // the best there is
	}
	p := Problem{Line: line, Message: msg}
	if line < 1 || line > len(lines) {
		return p
	}
	text := strings.TrimRight(string(lines[line-1]), "\r\n")
	col, what := column(text)
	p.Column = col
	switch what {
	case '"', '\'':
		p.Message = fmt.Sprintf("the quoted value starting here is not closed (%s)", msg)
	case '{', '[':
		p.Message = fmt.Sprintf("the %q here is not closed (%s)", string(what), msg)
	case '\t':
		p.Message = "a tab in the indentation (YAML indents with spaces): " + msg
	}
	p.Path = keyPath(lines[:line])
	return p
}

// firstBadLine returns the line (from 1) after the longest prefix of the
// document that parses, or 0 when even the whole document parses.
func firstBadLine(lines [][]byte) int {
	var n yaml.Node
	for k := len(lines); k >= 0; k-- {
		if yaml.Unmarshal(bytes.Join(lines[:k], nil), &n) == nil {
			if k == len(lines) {
				return 0
			}
			return k + 1
		}
	}
	return 1
}

// column finds where on a line the problem most likely is: a quote opened
// and not closed, else a bracket opened and not closed, else a tab in the
// indentation, else the first character. It returns the column (from 1) and
// that character.
func column(line string) (int, rune) {
	var open []int // positions of unclosed brackets
	quote, quoteAt := byte(0), 0
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				if quote == '\'' && i+1 < len(line) && line[i+1] == '\'' {
					i++ // '' inside single quotes
					continue
				}
				quote = 0
			} else if c == '\\' && quote == '"' {
				i++
			}
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			i = len(line) // a comment: the rest does not count
		case (c == '"' || c == '\'') && startsValue(line, i):
			quote, quoteAt = c, i
		case c == '{' || c == '[':
			open = append(open, i)
		case (c == '}' || c == ']') && len(open) > 0:
			open = open[:len(open)-1]
		}
	}
	switch {
	case quote != 0:
		return quoteAt + 1, rune(quote)
	case len(open) > 0:
		i := open[len(open)-1]
		return i + 1, rune(line[i])
	}
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case ' ':
			continue
		case '\t':
			return i + 1, '\t'
		}
		return i + 1, rune(line[i])
	}
	return 1, 0
}

// startsValue reports whether a quote at i opens a quoted scalar: at the
// start of the line's content or after ": ", "- ", '{', '[' or ','.
func startsValue(line string, i int) bool {
	j := i - 1
	for j >= 0 && line[j] == ' ' {
		j--
	}
	if j < 0 {
		return true
	}
	switch line[j] {
	case '{', '[', ',':
		return true
	case ':', '-':
		return j < i-1 // followed by a space
	}
	return false
}

var keyRE = regexp.MustCompile(`^((?:- +)*)("[^"]*"|'[^']*'|[^\s#'"{}\[\],:&*!|>][^#]*?)\s*:(?:\s|$)`)

// keyPath returns the key path of the last line of lines (its own key
// included) from the block keys above it, by indentation.
func keyPath(lines [][]byte) string {
	type key struct {
		indent int
		name   string
		leaf   bool // it has a value on its line: nothing nests under it
	}
	var stack []key
	for _, raw := range lines {
		text := strings.TrimRight(string(raw), "\r\n")
		trimmed := strings.TrimLeft(text, " \t")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(text) - len(trimmed)
		m := keyRE.FindStringSubmatch(trimmed)
		if m == nil {
			for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		indent += len(m[1]) // "- key:" is indented past its dash
		for len(stack) > 0 && (stack[len(stack)-1].indent >= indent || stack[len(stack)-1].leaf) {
			stack = stack[:len(stack)-1]
		}
		rest := strings.TrimSpace(trimmed[len(m[0]):])
		leaf := rest != "" && !strings.HasPrefix(rest, "#") && rest != "|" && rest != ">"
		stack = append(stack, key{indent, strings.Trim(m[2], `"'`), leaf})
	}
	names := make([]string, len(stack))
	for i, k := range stack {
		names[i] = k.name
	}
	return strings.Join(names, ".")
}
