package sip

import (
	"errors"
	"strings"
)

// ErrBadDTMF is returned for a SIP INFO DTMF body that names no valid digit.
var ErrBadDTMF = errors.New("bad DTMF body")

// ParseInfoDTMF reads a digit from a SIP INFO body. ok is false when the
// content type is not a DTMF one; err is set when it is but the body is bad.
// application/dtmf-relay carries "Signal=5\r\nDuration=160"; application/dtmf
// carries the bare digit.
func ParseInfoDTMF(contentType string, body []byte) (digit rune, ok bool, err error) {
	ct := strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
	var sig string
	switch ct {
	case "application/dtmf-relay":
		for _, line := range strings.Split(string(body), "\n") {
			k, v, found := strings.Cut(line, "=")
			if found && strings.EqualFold(strings.TrimSpace(k), "signal") {
				sig = strings.TrimSpace(v)
				break
			}
		}
	case "application/dtmf":
		sig = strings.TrimSpace(string(body))
	default:
		return 0, false, nil
	}
	d, valid := dtmfDigit(sig)
	if !valid {
		return 0, true, ErrBadDTMF
	}
	return d, true, nil
}

// dtmfDigit accepts one of 0-9 * # A-D, or the event codes 10 (*) and 11 (#)
// that some phones send.
func dtmfDigit(s string) (rune, bool) {
	switch s {
	case "10":
		return '*', true
	case "11":
		return '#', true
	}
	if len(s) != 1 {
		return 0, false
	}
	c := rune(s[0])
	switch {
	case c >= '0' && c <= '9', c == '*', c == '#':
		return c, true
	case c >= 'A' && c <= 'D':
		return c, true
	case c >= 'a' && c <= 'd':
		return c - 'a' + 'A', true
	}
	return 0, false
}
