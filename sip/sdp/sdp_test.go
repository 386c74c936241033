package sdp

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// crlf turns a readable \n-joined literal into the \r\n wire form.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

var ours = []Codec{PCMU, PCMA}

// Offers as real user agents send them (trimmed of lines that only add
// noise). They double as the fuzz seed corpus.
var (
	// Linphone desktop: opus, speex, G.711, G.729, three telephone-event
	// rates, plus a video stream.
	linphoneOffer = crlf(`v=0
o=alice 2106 1503 IN IP4 192.168.1.10
s=Talk
c=IN IP4 192.168.1.10
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96
a=rtpmap:96 VP8/90000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 ccm fir
`)
	// baresip with rtcp-mux enabled.
	baresipOffer = crlf(`v=0
o=- 1480287493 2795624582 IN IP4 10.0.0.2
s=-
c=IN IP4 10.0.0.2
t=0 0
m=audio 10842 RTP/AVP 0 8 101
b=AS:64
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-mux
a=ptime:20
a=sendrecv
a=ssrc:3416034181 cname:e4c3a1f0-1d2b-4c55-9e2f-2f0c3a6b9d11
`)
	// Asterisk (chan_pjsip) preferring alaw, with maxptime.
	asteriskOffer = crlf(`v=0
o=- 1650465281 1650465281 IN IP4 203.0.113.5
s=Asterisk
c=IN IP4 203.0.113.5
t=0 0
m=audio 17534 RTP/AVP 8 0 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
`)
	// Twilio Elastic SIP trunk.
	twilioOffer = crlf(`v=0
o=root 1163423419 1163423419 IN IP4 54.172.60.1
s=Twilio Media Gateway
c=IN IP4 54.172.60.1
t=0 0
m=audio 15880 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
`)
	// A minimal gateway offer: PCMA only, no rtpmap (optional for static PTs).
	pcmaOnlyOffer = crlf(`v=0
o=gw 1 1 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
m=audio 20000 RTP/AVP 8
`)
	wideOnlyOffer = crlf(`v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 111 9 13
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:9 G722/8000
a=rtpmap:13 CN/8000
`)
	dtmfOnlyOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
`)
	ptime30Offer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 0 96
a=rtpmap:0 PCMU/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-15
a=ptime:30
`)
	sendonlyOffer = crlf(`v=0
o=- 1 2 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendonly
`)
	inactiveOffer = crlf(`v=0
o=- 1 3 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 0
a=inactive
`)
	// RFC 2543-style hold as old gear still sends it.
	oldHoldOffer = crlf(`v=0
o=- 1 4 IN IP4 192.0.2.10
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 9000 RTP/AVP 0
`)
	oldHoldSendonlyOffer = crlf(`v=0
o=- 1 4 IN IP4 192.0.2.10
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 9000 RTP/AVP 0
a=sendonly
`)
	// Media-level c= and direction override the session-level ones.
	mediaLevelOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
a=sendonly
m=audio 9000 RTP/AVP 8
c=IN IP4 192.0.2.99
a=recvonly
`)
	sessionDirOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
t=0 0
a=sendonly
m=audio 9000 RTP/AVP 8
c=IN IP4 192.0.2.99
`)
	// RFC 3605 a=rtcp with an address, as a phone behind NAT sends it.
	rtcpAttrOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 0
a=rtcp:53020 IN IP4 203.0.113.77
`)
	rtcpPortOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 0
a=rtcp:9011
`)
	// WebRTC-gateway style: rtcp-mux with the placeholder a=rtcp:9 line.
	rtcpMuxOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVPF 0 8
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
`)
	dynamicPCMUOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 110 111 96
a=rtpmap:110 pcmu/8000
a=rtpmap:111 PCMA/8000
a=rtpmap:96 telephone-event/8000
`)
	stereoPCMUOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 110 8
a=rtpmap:110 PCMU/8000/2
`)
	videoOnlyOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=video 9000 RTP/AVP 96
a=rtpmap:96 H264/90000
`)
	// First audio stream disabled, second one usable, then a T.38 stream.
	secondAudioOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
t=0 0
m=audio 0 RTP/AVP 0
m=audio 9002 RTP/AVP 8 0
c=IN IP4 192.0.2.20
m=image 0 udptl t38
`)
	srtpOnlyOffer = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/SAVP 0
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
`)
	hostnameOffer = crlf(`v=0
o=- 1 1 IN IP4 pbx.example.com
s=-
c=IN IP4 pbx.example.com
t=0 0
m=audio 9000 RTP/AVP 0
`)
	ipv6Offer = crlf(`v=0
o=- 1 1 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 9000 RTP/AVP 0 8 101
a=rtpmap:101 telephone-event/8000
`)
	// \n-only line endings (some softphones and hand-written test tools),
	// with blank-trailing lines.
	lfOnlyOffer = "v=0\no=- 1 1 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\nm=audio 9000 RTP/AVP 8 \na=ptime:20\n\n"
	// No trailing newline at all.
	noFinalEOLOffer = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 9000 RTP/AVP 0"
)

func TestNegotiate(t *testing.T) {
	v4 := func(s string, port uint16) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr(s), port)
	}
	tests := []struct {
		name  string
		offer string
		want  Negotiated
		err   error
	}{
		{"linphone first match in offer order", linphoneOffer, Negotiated{
			RemoteAddr: v4("192.168.1.10", 7078), RemoteRTCPAddr: v4("192.168.1.10", 7079),
			Codec: PCMU, DTMFPayloadType: 100,
			RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"baresip rtcp-mux", baresipOffer, Negotiated{
			RemoteAddr: v4("10.0.0.2", 10842), RemoteRTCPAddr: v4("10.0.0.2", 10842),
			Codec: PCMU, DTMFPayloadType: 101, Ptime: 20,
			RemoteDirection: SendRecv, LocalDirection: SendRecv, RTCPMux: true,
		}, nil},
		{"asterisk prefers PCMA", asteriskOffer, Negotiated{
			RemoteAddr: v4("203.0.113.5", 17534), RemoteRTCPAddr: v4("203.0.113.5", 17535),
			Codec: PCMA, DTMFPayloadType: 101, Ptime: 20,
			RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"twilio", twilioOffer, Negotiated{
			RemoteAddr: v4("54.172.60.1", 15880), RemoteRTCPAddr: v4("54.172.60.1", 15881),
			Codec: PCMU, DTMFPayloadType: 101, Ptime: 20,
			RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"PCMA only without rtpmap", pcmaOnlyOffer, Negotiated{
			RemoteAddr: v4("198.51.100.7", 20000), RemoteRTCPAddr: v4("198.51.100.7", 20001),
			Codec: PCMA, RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"ptime 30 and dynamic DTMF 96", ptime30Offer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("192.0.2.10", 9001),
			Codec: PCMU, DTMFPayloadType: 96, Ptime: 30,
			RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"sendonly answered recvonly", sendonlyOffer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("192.0.2.10", 9001),
			Codec: PCMU, DTMFPayloadType: 101,
			RemoteDirection: SendOnly, LocalDirection: RecvOnly,
		}, nil},
		{"inactive", inactiveOffer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("192.0.2.10", 9001),
			Codec: PCMU, RemoteDirection: Inactive, LocalDirection: Inactive,
		}, nil},
		{"c=0.0.0.0 hold is inactive", oldHoldOffer, Negotiated{
			RemoteAddr: v4("0.0.0.0", 9000), RemoteRTCPAddr: v4("0.0.0.0", 9001),
			Codec: PCMU, RemoteDirection: Inactive, LocalDirection: Inactive,
		}, nil},
		{"c=0.0.0.0 keeps explicit direction", oldHoldSendonlyOffer, Negotiated{
			RemoteAddr: v4("0.0.0.0", 9000), RemoteRTCPAddr: v4("0.0.0.0", 9001),
			Codec: PCMU, RemoteDirection: SendOnly, LocalDirection: RecvOnly,
		}, nil},
		{"media-level c= and direction win", mediaLevelOffer, Negotiated{
			RemoteAddr: v4("192.0.2.99", 9000), RemoteRTCPAddr: v4("192.0.2.99", 9001),
			Codec: PCMA, RemoteDirection: RecvOnly, LocalDirection: SendOnly,
		}, nil},
		{"session-level direction applies", sessionDirOffer, Negotiated{
			RemoteAddr: v4("192.0.2.99", 9000), RemoteRTCPAddr: v4("192.0.2.99", 9001),
			Codec: PCMA, RemoteDirection: SendOnly, LocalDirection: RecvOnly,
		}, nil},
		{"a=rtcp with address", rtcpAttrOffer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("203.0.113.77", 53020),
			Codec: PCMU, RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"a=rtcp port only", rtcpPortOffer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("192.0.2.10", 9011),
			Codec: PCMU, RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"rtcp-mux beats a=rtcp, AVPF accepted", rtcpMuxOffer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("192.0.2.10", 9000),
			Codec: PCMU, RemoteDirection: SendRecv, LocalDirection: SendRecv, RTCPMux: true,
		}, nil},
		{"dynamic PT matched by name case-insensitively", dynamicPCMUOffer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("192.0.2.10", 9001),
			Codec: Codec{"PCMU", 110, 8000}, DTMFPayloadType: 96,
			RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"stereo PCMU skipped", stereoPCMUOffer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("192.0.2.10", 9001),
			Codec: PCMA, RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"second audio after port 0", secondAudioOffer, Negotiated{
			RemoteAddr: v4("192.0.2.20", 9002), RemoteRTCPAddr: v4("192.0.2.20", 9003),
			Codec: PCMA, RemoteDirection: SendRecv, LocalDirection: SendRecv, MediaIndex: 1,
		}, nil},
		{"IPv6", ipv6Offer, Negotiated{
			RemoteAddr:     netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), 9000),
			RemoteRTCPAddr: netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), 9001),
			Codec:          PCMU, DTMFPayloadType: 101, RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"LF-only line endings", lfOnlyOffer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("192.0.2.10", 9001),
			Codec: PCMA, Ptime: 20, RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"no final line ending", noFinalEOLOffer, Negotiated{
			RemoteAddr: v4("192.0.2.10", 9000), RemoteRTCPAddr: v4("192.0.2.10", 9001),
			Codec: PCMU, RemoteDirection: SendRecv, LocalDirection: SendRecv,
		}, nil},
		{"opus and G722 only", wideOnlyOffer, Negotiated{}, ErrNoCommonCodec},
		{"telephone-event only", dtmfOnlyOffer, Negotiated{}, ErrNoCommonCodec},
		{"video only", videoOnlyOffer, Negotiated{}, ErrNoAudio},
		{"SRTP only", srtpOnlyOffer, Negotiated{}, ErrNoAudio},
		{"hostname c=", hostnameOffer, Negotiated{}, ErrNoAudio},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.offer))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := Negotiate(s, ours)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Negotiate error = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Negotiate: %v", err)
			}
			if got != tt.want {
				t.Errorf("Negotiate =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestNegotiateEdges(t *testing.T) {
	s, err := Parse([]byte(asteriskOffer))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Negotiate(s, nil); !errors.Is(err, ErrNoCommonCodec) {
		t.Errorf("no codecs of ours: err = %v, want ErrNoCommonCodec", err)
	}
	// Our preference order does not matter; the offer's does.
	if n, _ := Negotiate(s, []Codec{PCMU, PCMA}); n.Codec != PCMA {
		t.Errorf("codec = %v, want PCMA (first in offer)", n.Codec)
	}
	// telephone-event in ours must not be picked as the voice codec.
	d, _ := Parse([]byte(dtmfOnlyOffer))
	if _, err := Negotiate(d, []Codec{{"telephone-event", 101, 8000}}); !errors.Is(err, ErrNoCommonCodec) {
		t.Errorf("telephone-event as codec: err = %v", err)
	}
	if _, err := Negotiate(nil, ours); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil offer: err = %v", err)
	}
	// The error says what was offered, for the log line and the 488.
	w, _ := Parse([]byte(wideOnlyOffer))
	_, err = Negotiate(w, ours)
	if msg := err.Error(); !strings.Contains(msg, "opus/48000") || !strings.Contains(msg, "PCMU, PCMA") {
		t.Errorf("error %q does not describe the offer", msg)
	}
	// RTP port 65535 has no port+1 for RTCP.
	h, _ := Parse([]byte(strings.Replace(pcmaOnlyOffer, "20000", "65535", 1)))
	n, err := Negotiate(h, ours)
	if err != nil || n.RemoteRTCPAddr.Port() != 0 {
		t.Errorf("port 65535: %+v, %v", n, err)
	}
	// No common codec in the first stream: the next usable one is tried.
	two, err := Parse([]byte(crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 9000 RTP/AVP 9
m=audio 9002 RTP/AVP 0
`)))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := Negotiate(two, ours); err != nil || n.MediaIndex != 1 || n.Codec != PCMU {
		t.Errorf("fallback to second stream: %+v, %v", n, err)
	}
}

func TestParseFields(t *testing.T) {
	s, err := Parse([]byte(linphoneOffer))
	if err != nil {
		t.Fatal(err)
	}
	want := &Session{
		Origin:     Origin{"alice", 2106, 1503, "IN", "IP4", "192.168.1.10"},
		Name:       "Talk",
		Connection: "192.168.1.10",
		Media: []Media{
			{
				Type: "audio", Port: 7078, Proto: "RTP/AVP",
				Formats: []uint8{96, 97, 98, 0, 8, 18, 101, 99, 100},
				RTPMaps: map[uint8]RTPMap{
					96: {"opus", 48000, 2}, 97: {"speex", 16000, 0}, 98: {"speex", 8000, 0},
					101: {"telephone-event", 48000, 0}, 99: {"telephone-event", 16000, 0},
					100: {"telephone-event", 8000, 0},
				},
				Fmtp: map[uint8]string{96: "useinbandfec=1", 97: "vbr=on", 98: "vbr=on", 18: "annexb=yes"},
			},
			{
				Type: "video", Port: 9078, Proto: "RTP/AVP", Formats: []uint8{96},
				RTPMaps: map[uint8]RTPMap{96: {"VP8", 90000, 0}},
			},
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", s, want)
	}

	s, err = Parse([]byte(rtcpAttrOffer))
	if err != nil {
		t.Fatal(err)
	}
	if m := s.Media[0]; m.RTCPPort != 53020 || m.RTCPConnection != "203.0.113.77" {
		t.Errorf("a=rtcp: port %d addr %q", m.RTCPPort, m.RTCPConnection)
	}
	s, err = Parse([]byte(secondAudioOffer))
	if err != nil {
		t.Fatal(err)
	}
	if m := s.Media[2]; m.Type != "image" || m.Proto != "udptl" || m.Formats != nil {
		t.Errorf("non-RTP section = %+v", m)
	}
	// Multicast TTL suffix and port count are accepted and stripped.
	s, err = Parse([]byte(crlf(`v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 224.2.1.1/127
t=0 0
m=audio 49170/2 RTP/AVP 0 0 8
a=ptime:20.0
`)))
	if err != nil {
		t.Fatal(err)
	}
	if s.Connection != "224.2.1.1" || s.Media[0].Port != 49170 || !reflect.DeepEqual(s.Media[0].Formats, []uint8{0, 8}) || s.Media[0].Ptime != 20 {
		t.Errorf("got %+v", s)
	}
}

func TestParseMalformed(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"blank lines only", "\r\n\r\n"},
		{"binary", "\x00\x01\x02\xff\xfe\x80garbage"},
		{"binary no NUL", "\xff\xfe\x80\x81=\x90"},
		{"HTTP instead of SDP", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"missing v=", "o=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"},
		{"version 1", strings.Replace(head, "v=0", "v=1", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"two v=", head + "v=0\r\nm=audio 9 RTP/AVP 0\r\n"},
		{"missing o=", "v=0\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 9 RTP/AVP 0\r\n"},
		{"missing s=", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 9 RTP/AVP 0\r\n"},
		{"no m=", head},
		{"o= short", strings.Replace(head, "o=- 1 1 IN IP4 192.0.2.1", "o=- 1 IN IP4", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"o= id not numeric", strings.Replace(head, "o=- 1 1", "o=- abc 1", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"o= id overflows", strings.Replace(head, "o=- 1 1", "o=- 99999999999999999999 1", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"o= in media", head + "m=audio 9 RTP/AVP 0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"},
		{"no line type", head + "=audio\r\nm=audio 9 RTP/AVP 0\r\n"},
		{"no equals", head + "m audio 9 RTP/AVP 0\r\n"},
		{"uppercase type", head + "M=audio 9 RTP/AVP 0\r\n"},
		{"bare CR", head + "m=audio 9 RTP/AVP 0\ra=sendrecv\r\n"},
		{"CR-only endings", strings.ReplaceAll(head+"m=audio 9 RTP/AVP 0\r\n", "\r\n", "\r")},
		{"m= port not numeric", head + "m=audio abc RTP/AVP 0\r\n"},
		{"m= port signed", head + "m=audio +9 RTP/AVP 0\r\n"},
		{"m= port too big", head + "m=audio 65536 RTP/AVP 0\r\n"},
		{"m= port count zero", head + "m=audio 9/0 RTP/AVP 0\r\n"},
		{"m= no formats", head + "m=audio 9 RTP/AVP\r\n"},
		{"m= non-numeric RTP format", head + "m=audio 9 RTP/AVP PCMU\r\n"},
		{"m= PT over 127", head + "m=audio 9 RTP/AVP 128\r\n"},
		{"m= too many formats", head + "m=audio 9 RTP/AVP" + strings.Repeat(" 0", maxFormats+1) + "\r\n"},
		{"too many m=", head + strings.Repeat("m=audio 9 RTP/AVP 0\r\n", maxMedia+1)},
		{"c= wrong nettype", strings.Replace(head, "c=IN", "c=XX", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"c= wrong addrtype", strings.Replace(head, "c=IN IP4", "c=IN IP5", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"c= family mismatch", strings.Replace(head, "c=IN IP4 192.0.2.1", "c=IN IP4 2001:db8::1", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"c= IPv6 zone", strings.Replace(head, "c=IN IP4 192.0.2.1", "c=IN IP6 fe80::1%eth0", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"c= junk address", strings.Replace(head, "192.0.2.1\r\nt", "<script>\r\nt", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"c= missing address", strings.Replace(head, "c=IN IP4 192.0.2.1", "c=IN IP4", 1) + "m=audio 9 RTP/AVP 0\r\n"},
		{"two session c=", head + "c=IN IP4 192.0.2.2\r\nm=audio 9 RTP/AVP 0\r\n"},
		{"two media c=", head + "m=audio 9 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\nc=IN IP4 192.0.2.3\r\n"},
		{"audio without c=", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"},
		{"rtpmap bad PT", head + "m=audio 9 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n"},
		{"ptime junk", head + "m=audio 9 RTP/AVP 0\r\na=ptime:abc\r\n"},
		{"ptime zero", head + "m=audio 9 RTP/AVP 0\r\na=ptime:0\r\n"},
		{"rtcp junk", head + "m=audio 9 RTP/AVP 0\r\na=rtcp:x\r\n"},
		{"rtcp 2 fields", head + "m=audio 9 RTP/AVP 0\r\na=rtcp:9 IN\r\n"},
		{"conflicting directions", head + "m=audio 9 RTP/AVP 0\r\na=sendonly\r\na=recvonly\r\n"},
		{"too many lines", head + "m=audio 9 RTP/AVP 0\r\n" + strings.Repeat("a=x\r\n", maxLines)},
		{"too big", head + "m=audio 9 RTP/AVP 0\r\n" + strings.Repeat("a=x\r\n", maxBodySize/5+1)},
		{"one huge line", head + "m=audio 9 RTP/AVP 0\r\na=" + strings.Repeat("x", maxBodySize) + "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.in))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %+v, %v; want ErrMalformed", s, err)
			}
			if s != nil {
				t.Errorf("Parse returned a session with an error")
			}
			if len(err.Error()) > 200 {
				t.Errorf("error too long (%d bytes): %.80q...", len(err.Error()), err.Error())
			}
		})
	}
}

// TestParseLenient covers things real peers send that are not strictly
// RFC 8866 but harmless.
func TestParseLenient(t *testing.T) {
	tests := []struct{ name, in string }{
		{"trailing blanks", "v=0 \r\no=- 1 1 IN IP4 192.0.2.1\t\r\ns=\r\nc=IN IP4 192.0.2.1 \r\nm=audio 9 RTP/AVP 0 \r\n"},
		{"no t= and empty s=", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=\r\nc=IN IP4 192.0.2.1\r\nm=audio 9 RTP/AVP 0\r\n"},
		{"double spaces", "v=0\r\no=-  1 1 IN  IP4 192.0.2.1\r\ns=-\r\nc=IN IP4  192.0.2.1\r\nm=audio  9 RTP/AVP  0  8\r\na=rtpmap:0  PCMU/8000\r\n"},
		{"unknown line types", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nx=whatever\r\nc=IN IP4 192.0.2.1\r\nb=AS:84\r\nm=audio 9 RTP/AVP 0\r\nb=TIAS:64000\r\n"},
		{"rtpmap for PT not on m= line", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:8 PCMA/8000\r\n"},
		{"disabled audio without c=", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 0 RTP/AVP 0\r\nm=audio 9 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n"},
		{"IPv4-mapped IPv6", "v=0\r\no=- 1 1 IN IP6 ::ffff:192.0.2.1\r\ns=-\r\nc=IN IP6 ::ffff:192.0.2.1\r\nm=audio 9 RTP/AVP 0\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if _, err := Negotiate(s, ours); err != nil {
				t.Errorf("Negotiate: %v", err)
			}
		})
	}
}

// A broken a=rtpmap or a=fmtp line sinks the offer only when it may
// describe the codec we would pick: RFC 4475's esc01 and longreq carry
// "a=rtpmap:31 LPC" (no clock rate) on a video line next to good G.711.
func TestMalformedRTPMap(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	tests := []struct {
		name, in  string
		malformed []uint8 // PTs of the first m= marked malformed (nil: none)
		wantErr   error   // from Negotiate; nil means pt is chosen
		pt        uint8
	}{
		{"esc01: no clock on an unused video PT", head + "m=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n", nil, nil, 0},
		{"no clock on an unused audio PT", head + "m=audio 9 RTP/AVP 96 8\r\na=rtpmap:96 opus\r\n", []uint8{96}, nil, 8},
		{"bad channels on an unused PT", head + "m=audio 9 RTP/AVP 8 97\r\na=rtpmap:97 speex/16000/x\r\n", []uint8{97}, nil, 8},
		{"conflicting fmtp on an unused PT", head + "m=audio 9 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=fmtp:96 0-16\r\n", []uint8{96}, nil, 0},
		{"a broken G.711 line skipped for a good one", head + "m=audio 9 RTP/AVP 96 8\r\na=rtpmap:96 PCMU\r\n", []uint8{96}, nil, 8},
		{"rtpmap for a PT not offered", head + "m=audio 9 RTP/AVP 0\r\na=rtpmap:8 PCMA\r\n", nil, nil, 0},
		{"the only codec has no clock", head + "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n", []uint8{0}, ErrMalformed, 0},
		{"the only codec has a zero clock", head + "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/0\r\n", []uint8{0}, ErrMalformed, 0},
		{"the only codec has bad channels", head + "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/x\r\n", []uint8{0}, ErrMalformed, 0},
		{"the only codec has two meanings", head + "m=audio 9 RTP/AVP 96\r\na=rtpmap:96 PCMU/8000\r\na=rtpmap:96 PCMA/8000\r\n", []uint8{96}, ErrMalformed, 0},
		{"the only codec has conflicting fmtp", head + "m=audio 9 RTP/AVP 8\r\na=fmtp:8 x=1\r\na=fmtp:8 x=2\r\n", []uint8{8}, ErrMalformed, 0},
		{"nothing of ours, well formed", head + "m=audio 9 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n", nil, ErrNoCommonCodec, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var got []uint8
			for pt := range s.Media[0].Malformed {
				got = append(got, pt)
			}
			if !reflect.DeepEqual(got, tt.malformed) {
				t.Errorf("malformed PTs %v, want %v", got, tt.malformed)
			}
			for pt := range s.Media[0].Malformed {
				if _, ok := s.Media[0].RTPMaps[pt]; ok {
					t.Errorf("PT %d is malformed but kept its rtpmap", pt)
				}
				if _, ok := s.Media[0].Fmtp[pt]; ok {
					t.Errorf("PT %d is malformed but kept its fmtp", pt)
				}
			}
			n, err := Negotiate(s, ours)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Negotiate = %+v, %v; want %v", n, err, tt.wantErr)
				}
				if _, _, aerr := Answer(s, ours, Local{Address: netip.MustParseAddr("192.0.2.9"), Port: 4000}); !errors.Is(aerr, tt.wantErr) {
					t.Errorf("Answer: %v; want %v", aerr, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Negotiate: %v", err)
			}
			if n.Codec.PayloadType != tt.pt || n.MediaIndex != 0 {
				t.Errorf("chose PT %d in m= %d, want PT %d in m= 0", n.Codec.PayloadType, n.MediaIndex, tt.pt)
			}
			if n.DTMFPayloadType != 0 {
				t.Errorf("telephone-event PT %d from a broken description", n.DTMFPayloadType)
			}
		})
	}
}

func TestDirectionReverse(t *testing.T) {
	for in, want := range map[Direction]Direction{
		SendRecv: SendRecv, SendOnly: RecvOnly, RecvOnly: SendOnly, Inactive: Inactive, "": "",
	} {
		if got := in.Reverse(); got != want {
			t.Errorf("%q.Reverse() = %q, want %q", in, got, want)
		}
	}
}

func TestBuild(t *testing.T) {
	got := string(Build(Local{
		Address:         netip.MustParseAddr("203.0.113.10"),
		Port:            40000,
		SessionID:       42,
		Version:         7,
		Codecs:          []Codec{PCMU, PCMA},
		DTMFPayloadType: 101,
	}))
	want := crlf(`v=0
o=voxbridge 42 7 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
`)
	if got != want {
		t.Errorf("Build =\n%s\nwant\n%s", got, want)
	}
}

func TestBuildRepairs(t *testing.T) {
	got := string(Build(Local{
		Port:            70000,                                            // out of range → 0
		Codecs:          []Codec{{"PC\r\nMU", 0, 8000}, {"X", 200, 8000}}, // injection stripped, PT>127 dropped
		DTMFPayloadType: 0,
		UserAgent:       "vox bridge\r\nm=video",
		Direction:       "bogus",
	}))
	s, err := Parse([]byte(got))
	if err != nil {
		t.Fatalf("Parse(Build) = %v\n%s", err, got)
	}
	if len(s.Media) != 1 || s.Media[0].Port != 0 || s.Connection != "0.0.0.0" ||
		s.Origin.Username != "voxbridgem=video" || s.Media[0].Direction != SendRecv ||
		!reflect.DeepEqual(s.Media[0].Formats, []uint8{0}) {
		t.Errorf("repaired body:\n%s", got)
	}
	// No usable codec at all falls back to G.711; a DTMF PT equal to a
	// codec's is dropped.
	s, err = Parse(Build(Local{Address: netip.MustParseAddr("192.0.2.1"), DTMFPayloadType: 8}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Media[0].Formats, []uint8{0, 8}) {
		t.Errorf("formats = %v", s.Media[0].Formats)
	}
}

func TestBuildRoundTrip(t *testing.T) {
	tests := []Local{
		{Address: netip.MustParseAddr("192.0.2.1"), Port: 4000, SessionID: 1, Version: 1, Codecs: []Codec{PCMU}},
		{Address: netip.MustParseAddr("192.0.2.1"), Port: 4002, SessionID: 1<<64 - 1, Version: 1<<64 - 1,
			Codecs: []Codec{PCMA, PCMU}, DTMFPayloadType: 96, Ptime: 30, Direction: SendOnly, RTCPMux: true, UserAgent: "vb-1.2"},
		{Address: netip.MustParseAddr("2001:db8::5"), Port: 65534, SessionID: 9, Version: 10,
			Codecs: []Codec{{"PCMU", 110, 8000}}, DTMFPayloadType: 101, Direction: Inactive},
		{Address: netip.MustParseAddr("::ffff:198.51.100.1"), Port: 0, Codecs: []Codec{PCMU}, Direction: RecvOnly},
	}
	for _, l := range tests {
		b := Build(l)
		s, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Build(%+v)): %v\n%s", l, err, b)
		}
		addr := l.Address.Unmap()
		addrType := "IP4"
		if addr.Is6() {
			addrType = "IP6"
		}
		user := l.UserAgent
		if user == "" {
			user = "voxbridge"
		}
		ptime := l.Ptime
		if ptime == 0 {
			ptime = 20
		}
		dir := l.Direction
		if dir == "" {
			dir = SendRecv
		}
		want := &Session{
			Origin:     Origin{user, l.SessionID, l.Version, "IN", addrType, addr.String()},
			Name:       "-",
			Connection: addr.String(),
			Media: []Media{{
				Type: "audio", Port: l.Port, Proto: "RTP/AVP",
				RTPMaps: map[uint8]RTPMap{}, Ptime: ptime, Direction: dir, RTCPMux: l.RTCPMux,
			}},
		}
		m := &want.Media[0]
		for _, c := range l.Codecs {
			m.Formats = append(m.Formats, c.PayloadType)
			m.RTPMaps[c.PayloadType] = RTPMap{Name: c.Name, ClockRate: c.ClockRate}
		}
		if l.DTMFPayloadType != 0 {
			m.Formats = append(m.Formats, l.DTMFPayloadType)
			m.RTPMaps[l.DTMFPayloadType] = RTPMap{Name: "telephone-event", ClockRate: 8000}
			m.Fmtp = map[uint8]string{l.DTMFPayloadType: "0-16"}
		}
		if !reflect.DeepEqual(s, want) {
			t.Errorf("round trip of %+v:\n got %+v\nwant %+v", l, s, want)
		}
		// And what we offer, we can negotiate against ourselves.
		n, err := Negotiate(s, []Codec{l.Codecs[0]})
		if l.Port == 0 {
			if !errors.Is(err, ErrNoAudio) {
				t.Errorf("port 0: err = %v", err)
			}
			continue
		}
		if err != nil || n.Codec != l.Codecs[0] || n.DTMFPayloadType != l.DTMFPayloadType || n.RemoteDirection != dir {
			t.Errorf("self-negotiate %+v: %+v, %v", l, n, err)
		}
	}
}

func TestAnswer(t *testing.T) {
	local := Local{
		Address:   netip.MustParseAddr("203.0.113.10"),
		Port:      40000,
		SessionID: 5000,
		Version:   5000,
		Codecs:    []Codec{PCMU}, // ignored by Answer
	}
	tests := []struct {
		name  string
		offer string
		want  string // answer body (\n form)
		dir   Direction
	}{
		{"linphone: video rejected, DTMF 8k PT echoed", linphoneOffer, `v=0
o=voxbridge 5000 5000 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
m=audio 40000 RTP/AVP 0 100
a=rtpmap:0 PCMU/8000
a=rtpmap:100 telephone-event/8000
a=fmtp:100 0-16
a=ptime:20
a=sendrecv
m=video 0 RTP/AVP 96
`, ""},
		{"baresip: rtcp-mux echoed", baresipOffer, `v=0
o=voxbridge 5000 5000 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
a=rtcp-mux
`, ""},
		{"sendonly offer: recvonly answer", sendonlyOffer, `v=0
o=voxbridge 5000 5000 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=recvonly
`, ""},
		{"second audio: first and T.38 rejected, AVPF kept", strings.Replace(secondAudioOffer, "9002 RTP/AVP", "9002 RTP/AVPF", 1), `v=0
o=voxbridge 5000 5000 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
m=audio 0 RTP/AVP 0
m=audio 40000 RTP/AVPF 8
a=rtpmap:8 PCMA/8000
a=ptime:20
a=sendrecv
m=image 0 udptl t38
`, ""},
		{"we hold a sendrecv call: sendonly", twilioOffer, `v=0
o=voxbridge 5000 5000 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendonly
`, SendOnly},
		{"both hold: inactive", strings.Replace(twilioOffer, "a=sendrecv", "a=sendonly", 1), `v=0
o=voxbridge 5000 5000 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=inactive
`, SendOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offer, err := Parse([]byte(tt.offer))
			if err != nil {
				t.Fatal(err)
			}
			l := local
			l.Direction = tt.dir
			n, body, err := Answer(offer, ours, l)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(body), crlf(tt.want); got != want {
				t.Errorf("answer =\n%s\nwant\n%s", got, want)
			}
			ans, err := Parse(body)
			if err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if len(ans.Media) != len(offer.Media) {
				t.Errorf("answer has %d m= lines, offer %d", len(ans.Media), len(offer.Media))
			}
			// The offerer, negotiating our answer, must land on the same
			// stream, PTs and direction.
			back, err := Negotiate(ans, ours)
			if err != nil {
				t.Fatal(err)
			}
			if back.MediaIndex != n.MediaIndex || back.Codec != n.Codec ||
				back.DTMFPayloadType != n.DTMFPayloadType || back.RemoteDirection != n.LocalDirection {
				t.Errorf("offerer view %+v disagrees with ours %+v", back, n)
			}
		})
	}

	for _, in := range []string{wideOnlyOffer, videoOnlyOffer} {
		offer, _ := Parse([]byte(in))
		if _, body, err := Answer(offer, ours, local); err == nil || body != nil {
			t.Errorf("Answer accepted an offer it cannot serve: %q", body)
		}
	}
}

func TestAnswerDirection(t *testing.T) {
	dirs := []Direction{SendRecv, SendOnly, RecvOnly, Inactive}
	for _, remote := range dirs {
		if got := answerDirection(remote, ""); got != remote.Reverse() {
			t.Errorf("answerDirection(%s, \"\") = %s, want %s", remote, got, remote.Reverse())
		}
		for _, want := range dirs {
			got := answerDirection(remote, want)
			// We never send more than the offer lets us, nor more than we want.
			if got.sends() && (!remote.receives() || !want.sends()) ||
				got.receives() && (!remote.sends() || !want.receives()) {
				t.Errorf("answerDirection(%s, %s) = %s", remote, want, got)
			}
		}
	}
}

func TestParseDoesNotAliasInput(t *testing.T) {
	b := []byte(twilioOffer)
	s, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
	if s.Name != "Twilio Media Gateway" || s.Media[0].RTPMaps[101].Name != "telephone-event" {
		t.Errorf("session changed with the input buffer: %+v", s)
	}
}

func BenchmarkParseNegotiate(b *testing.B) {
	in := []byte(linphoneOffer)
	b.ReportAllocs()
	for b.Loop() {
		s, err := Parse(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Negotiate(s, ours); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseHostile(b *testing.B) {
	in := bytes.Repeat([]byte("a=x\r\n"), maxBodySize/5)
	copy(in, "v=0\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(in); err == nil {
			b.Fatal("accepted")
		}
	}
}
