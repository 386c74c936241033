package media

import "math"

// Packet-loss concealment after ITU-T G.711 Appendix I, simplified: a lost
// stretch is filled by repeating the last pitch period of what was played
// (two, then three periods as the loss goes on, which sounds less buzzy),
// at full level for 10 ms and then fading by 20 % per 10 ms, so a long gap
// goes quiet after 60 ms instead of droning. When real audio returns it is
// cross-faded in over 4-10 ms. Unlike Appendix I there is no 3.75 ms
// look-ahead delay: the first synthesized samples are shifted to meet the
// last played one instead of overlap-adding into played history.
const (
	plcHistLen  = 390 // 48.75 ms, enough for the correlation plus the longest lag
	plcMinPitch = 40  // 200 Hz
	plcMaxPitch = 120 // 66.7 Hz
	plcCorrLen  = 160 // 20 ms correlation window
	plcFullLen  = 80  // samples at full level
	plcFadeLen  = 400 // then linear fade to silence (20 % per 10 ms)
)

type plc struct {
	hist    [plcHistLen]int16 // most recent output, circular
	head    int               // next write position in hist
	active  bool              // inside a concealed stretch
	erased  int               // samples synthesized in the current stretch
	pitch   int
	periods int
	pos     int   // read position in the cycled region of hist
	offset  int32 // level correction at the start, decaying to 0
	offLen  int
	snap    [plcHistLen]int16 // hist in order, oldest first, when the stretch began
}

// record appends played samples (real or synthesized) to the history. The
// history is a ring, put in order only when a stretch begins, since every
// frame is recorded and few are concealed.
func (p *plc) record(out []int16) {
	if len(out) > plcHistLen {
		out = out[len(out)-plcHistLen:]
	}
	n := copy(p.hist[p.head:], out)
	copy(p.hist[:], out[n:])
	p.head = (p.head + len(out)) % plcHistLen
}

// reset ends a stretch without a cross-fade: what follows is silence.
func (p *plc) reset() { p.active = false }

func (p *plc) start() {
	n := copy(p.snap[:], p.hist[p.head:])
	copy(p.snap[n:], p.hist[:p.head])
	p.pitch = findPitch(&p.snap)
	p.periods, p.pos, p.erased, p.active = 1, 0, 0, true
	// The periodic continuation's first sample follows snap[L-P-1]; shift
	// it to follow the last played sample instead, fading the shift out.
	last := int32(p.snap[plcHistLen-1])
	p.offset = last - int32(p.snap[plcHistLen-p.pitch-1])
	p.offLen = max(p.pitch/4, 1)
}

// next returns one synthesized sample and advances the stretch.
func (p *plc) next() int16 {
	n := p.erased
	// Widen the repeated region at 10 and 20 ms: same absolute position,
	// so no discontinuity, just a longer cycle.
	if want := min(3, 1+n/plcFullLen); want > p.periods {
		p.pos += (want - p.periods) * p.pitch
		p.periods = want
	}
	region := p.periods * p.pitch
	v := float64(p.snap[plcHistLen-region+p.pos])
	p.pos++
	if p.pos == region {
		p.pos = 0
	}
	if n < p.offLen {
		v += float64(p.offset) * float64(p.offLen-n) / float64(p.offLen+1)
	}
	if n >= plcFullLen {
		v *= max(0, 1-float64(n-plcFullLen)/plcFadeLen)
	}
	p.erased++
	return clamp16(v)
}

// conceal fills dst with synthesized audio continuing what was played.
func (p *plc) conceal(dst []int16) {
	if !p.active {
		p.start()
	}
	if p.erased >= plcFullLen+plcFadeLen {
		clear(dst) // faded out: skip the arithmetic
		p.erased += len(dst)
		return
	}
	for i := range dst {
		dst[i] = p.next()
	}
}

// real is called with real samples about to be played; after a concealed
// stretch the first few are cross-faded from the synthesized continuation,
// longer after longer losses, as in Appendix I.
func (p *plc) real(dst []int16) {
	if !p.active {
		return
	}
	p.active = false
	if p.erased >= plcFullLen+plcFadeLen {
		// The synthesized signal is silent: fade in from silence.
		n := min(len(dst), 80)
		for i := range n {
			dst[i] = int16(int32(dst[i]) * int32(i) / int32(n))
		}
		return
	}
	m := min(32+32*((p.erased-1)/plcFullLen), 80, len(dst))
	for i := range m {
		s := int32(p.next())
		dst[i] = int16((int32(dst[i])*int32(i) + s*int32(m-i)) / int32(m))
	}
}

// findPitch returns the lag in [plcMinPitch, plcMaxPitch] whose past best
// matches the last plcCorrLen samples (normalised cross-correlation), with
// a coarse pass at even lags and a refinement around the winner.
func findPitch(h *[plcHistLen]int16) int {
	x := h[plcHistLen-plcCorrLen:]
	score := func(lag int) float64 {
		y := h[plcHistLen-plcCorrLen-lag : plcHistLen-lag]
		var num, energy float64
		for i := range x {
			a, b := float64(x[i]), float64(y[i])
			num += a * b
			energy += b * b
		}
		if energy == 0 {
			return math.Inf(-1)
		}
		return num / math.Sqrt(energy)
	}
	best, bestScore := plcMaxPitch, math.Inf(-1)
	for lag := plcMinPitch; lag <= plcMaxPitch; lag += 2 {
		if s := score(lag); s > bestScore {
			best, bestScore = lag, s
		}
	}
	for _, lag := range [2]int{best - 1, best + 1} {
		if lag >= plcMinPitch && lag <= plcMaxPitch {
			if s := score(lag); s > bestScore {
				best, bestScore = lag, s
			}
		}
	}
	return best
}
