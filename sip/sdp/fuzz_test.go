package sdp

import (
	"errors"
	"net/netip"
	"testing"
)

// FuzzParseNegotiate feeds arbitrary bodies through Parse, Negotiate and
// Answer. Beyond "never panic", it checks the contracts callers rely on:
// errors wrap the documented sentinels, and every answer we produce parses
// and leads the offerer back to the stream, codec and DTMF PT we chose.
func FuzzParseNegotiate(f *testing.F) {
	for _, s := range []string{
		linphoneOffer, baresipOffer, asteriskOffer, twilioOffer, pcmaOnlyOffer,
		wideOnlyOffer, dtmfOnlyOffer, ptime30Offer, sendonlyOffer, inactiveOffer,
		oldHoldOffer, oldHoldSendonlyOffer, mediaLevelOffer, sessionDirOffer,
		rtcpAttrOffer, rtcpPortOffer, rtcpMuxOffer, dynamicPCMUOffer,
		stereoPCMUOffer, videoOnlyOffer, secondAudioOffer, srtpOnlyOffer,
		hostnameOffer, ipv6Offer, lfOnlyOffer, noFinalEOLOffer,
		"", "\x00\x01\x02", "v=0\r\n", "v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nm=audio 1/2 RTP/AVP 0\r\n",
	} {
		f.Add([]byte(s))
	}
	local := Local{Address: netip.MustParseAddr("192.0.2.1"), Port: 4000, SessionID: 1, Version: 1}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error does not wrap ErrMalformed: %v", err)
			}
			if s != nil {
				t.Fatal("Parse returned a session with an error")
			}
			return
		}
		n, body, err := Answer(s, ours, local)
		if err != nil {
			// ErrMalformed: Parse let a broken rtpmap/fmtp through.
			if !errors.Is(err, ErrNoAudio) && !errors.Is(err, ErrNoCommonCodec) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Answer error is not ErrNoAudio/ErrNoCommonCodec/ErrMalformed: %v", err)
			}
			return
		}
		if !n.RemoteAddr.IsValid() || n.RemoteAddr.Port() == 0 || n.MediaIndex >= len(s.Media) {
			t.Fatalf("bad Negotiated %+v", n)
		}
		ans, err := Parse(body)
		if err != nil {
			t.Fatalf("our answer does not parse: %v\n%s", err, body)
		}
		if len(ans.Media) != len(s.Media) {
			t.Fatalf("answer has %d m= lines, offer %d", len(ans.Media), len(s.Media))
		}
		back, err := Negotiate(ans, ours)
		if err != nil {
			t.Fatalf("offerer cannot negotiate our answer: %v\n%s", err, body)
		}
		if back.MediaIndex != n.MediaIndex || back.Codec.PayloadType != n.Codec.PayloadType ||
			back.DTMFPayloadType != n.DTMFPayloadType || back.RemoteDirection != n.LocalDirection {
			t.Fatalf("offerer view %+v disagrees with ours %+v\n%s", back, n, body)
		}
	})
}
