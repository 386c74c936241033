//go:build !linux

package media

// Elsewhere the RTCP socket keeps a reader goroutine (see rtcppoll_linux.go).
func (s *Stream) initRTCPPoll() bool { return false }

func (s *Stream) pollRTCP(buf, oob []byte) {}
