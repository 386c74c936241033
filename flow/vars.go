package flow

import (
	"strings"
)

// Built-in variable names. Flows, webhooks, the API and the agent add more.
const (
	VarCallID        = "call.id"
	VarCallFrom      = "call.from"
	VarCallTo        = "call.to"
	VarCallDirection = "call.direction"
	VarCallDigits    = "call.digits"
	VarCallAMD       = "call.amd"
	VarTrunkName     = "trunk.name"
)

// maxVarValue bounds one variable's value: values come from webhooks and
// callers, and every one is stored with the call.
const maxVarValue = 4096

// maxVars bounds how many variables a call keeps.
const maxVars = 256

// expand substitutes ${name} in s from lookup. Unknown names become "" and
// are reported through unknown. "$${" is a literal "${".
func expand(s string, lookup func(string) (string, bool), unknown func(string)) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		name := strings.TrimSpace(s[i+2 : i+2+end])
		if v, ok := lookup(name); ok {
			b.WriteString(v)
		} else {
			unknown(name)
		}
		s = s[i+2+end+1:]
	}
}
