package media

import (
	"math"
	"net"
	"testing"
	"time"
)

func TestCodecByName(t *testing.T) {
	for _, tc := range []struct {
		name string
		pt   uint8
		want string
		ok   bool
	}{
		{"PCMU", 0, "PCMU", true},
		{"pcma", 8, "PCMA", true},
		{"PcMu", 101, "PCMU", true},
		{"G729", 18, "", false},
		{"", 0, "", false},
		{"PCMU", 128, "", false},
	} {
		c, err := CodecByName(tc.name, tc.pt)
		if (err == nil) != tc.ok || c.Name != tc.want || (tc.ok && c.PayloadType != tc.pt) {
			t.Errorf("CodecByName(%q, %d) = %+v, %v", tc.name, tc.pt, c, err)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	tone := Tone(1000, 200*time.Millisecond, 0.5)
	for _, c := range []Codec{PCMU, PCMA} {
		enc := c.Encode([]byte{0xAA}, tone) // appends
		if len(enc) != len(tone)+1 || enc[0] != 0xAA {
			t.Fatalf("%v: Encode did not append: len %d", c, len(enc))
		}
		dec := c.Decode(nil, enc[1:])
		if len(dec) != len(tone) {
			t.Fatalf("%v: decoded %d samples, want %d", c, len(dec), len(tone))
		}
		if f := DominantFrequency(dec, 300, 3400, 10); f != 1000 {
			t.Errorf("%v: dominant frequency %v, want 1000", c, f)
		}
		if l := ToneLevel(dec, 1000); math.Abs(l-0.5) > 0.02 {
			t.Errorf("%v: level %.3f, want ~0.5", c, l)
		}
		if l := ToneLevel(dec, 400); l > 0.01 {
			t.Errorf("%v: level at 400 Hz %.3f, want ~0", c, l)
		}
		// G.711 is ~38 dB SNR; the error must be small relative to the signal.
		var diff []int16
		for i := range tone {
			diff = append(diff, tone[i]-dec[i])
		}
		if r := RMS(diff) / RMS(tone); r > 0.03 {
			t.Errorf("%v: relative error %.4f", c, r)
		}
	}
	// Silence encodes to the codecs' idle patterns.
	if b := PCMU.Encode(nil, []int16{0}); b[0] != 0xFF {
		t.Errorf("PCMU silence = %#x", b[0])
	}
	if b := PCMA.Encode(nil, []int16{0}); b[0] != 0xD5 {
		t.Errorf("PCMA silence = %#x", b[0])
	}
}

func TestAnalysis(t *testing.T) {
	if n := len(Tone(440, time.Second, 1)); n != 8000 {
		t.Fatalf("Tone length %d", n)
	}
	if n := len(Silence(20 * time.Millisecond)); n != FrameSamples {
		t.Fatalf("Silence length %d", n)
	}
	full := Tone(1000, 100*time.Millisecond, 1)
	if l := ToneLevel(full, 1000); math.Abs(l-1) > 0.01 {
		t.Errorf("full-scale level %.4f, want ~1", l)
	}
	if r := RMS(full); math.Abs(r-32767/math.Sqrt2) > 50 {
		t.Errorf("RMS %.1f", r)
	}
	if RMS(nil) != 0 || ToneLevel(nil, 1000) != 0 || DominantFrequency(nil, 0, 1, 1) != 0 {
		t.Error("empty input should give 0")
	}
	if DominantFrequency(full, 100, 200, 0) != 0 {
		t.Error("zero step should give 0")
	}
	mix := Tone(697, time.Second, 0.3)
	hi := Tone(1477, time.Second, 0.6)
	for i := range mix {
		mix[i] += hi[i]
	}
	if f := DominantFrequency(mix, 300, 3400, 1); math.Abs(f-1477) > 2 {
		t.Errorf("dominant %v, want 1477", f)
	}
	if l := ToneLevel(mix, 697); math.Abs(l-0.3) > 0.01 {
		t.Errorf("697 level %.3f, want 0.3", l)
	}
	if l := ToneLevel(Silence(time.Second), 1000); l != 0 {
		t.Errorf("silence level %v", l)
	}
}

func TestPortRange(t *testing.T) {
	for _, bad := range []string{"", "10000", "a-b", "20000-10000", "0-10", "1-70000", "10001-10001", "10000-10000"} {
		if _, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) accepted", bad)
		}
	}
	r, err := ParsePortRange(" 40000 - 40011 ")
	if err != nil || r != (PortRange{40000, 40011}) {
		t.Fatalf("ParsePortRange = %v, %v", r, err)
	}
	// Exhaust a small range: every socket gets a distinct even port, then an error.
	r = PortRange{Min: 41001, Max: 41008} // even ports with p+1 in range: 41002, 41004, 41006
	seen := map[int]bool{}
	for range 3 {
		c, err := r.Listen(nil)
		if err != nil {
			t.Skipf("ports busy on this machine: %v", err)
		}
		defer c.Close()
		p := c.LocalAddr().(*net.UDPAddr).Port
		if p%2 != 0 || p < 41002 || p > 41006 || seen[p] {
			t.Fatalf("bad port %d (seen %v)", p, seen)
		}
		seen[p] = true
	}
	if c, err := r.Listen(nil); err == nil {
		c.Close()
		t.Fatal("Listen succeeded on an exhausted range")
	}
}
