package sip

import "bytes"

// forEachRawHeader calls f with each header field of a raw SIP message,
// from the line after the start line to the blank line that ends the
// headers: its name (trimmed, as written: compare with bytes.EqualFold),
// its raw value after the colon, and the whole line. Folded continuation
// lines are skipped. It allocates nothing, so it may run on every
// datagram; f returns false to stop.
func forEachRawHeader(msg []byte, f func(name, value, line []byte) bool) {
	_, rest, _ := bytes.Cut(msg, []byte{'\n'})
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			return // end of headers
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // folded continuation of the previous field
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if ok && !f(bytes.TrimSpace(name), value, line) {
			return
		}
	}
}
