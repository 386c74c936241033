package media

import "time"

// Arrival is one datagram and when it arrived.
type Arrival struct {
	At   time.Time
	Data []byte
}

// PlaySimulated runs arrivals (in arrival order) through r in simulated
// time: the arrival times are the clock, and Pull runs on a 20 ms grid from
// the first arrival until the buffer has played out after the last one.
// At equal times the packet goes in before the frame comes out. frame, if
// not nil, gets every frame (valid only during the call). Push errors are
// counted in the Receiver's Invalid and otherwise ignored. It returns the
// number of frames pulled.
func PlaySimulated(r *Receiver, arrivals []Arrival, frame func(at time.Time, pcm []int16)) int {
	if len(arrivals) == 0 {
		return 0
	}
	t0 := arrivals[0].At
	last := arrivals[len(arrivals)-1].At
	end := last.Add(time.Duration(r.maxDly) + 10*FrameDuration)
	i, n := 0, 0
	for at := t0; !at.After(end); at = t0.Add(time.Duration(n) * FrameDuration) {
		for i < len(arrivals) && !arrivals[i].At.After(at) {
			r.Push(arrivals[i].Data, arrivals[i].At)
			i++
		}
		f := r.Pull(at)
		if frame != nil {
			frame(at, f)
		}
		n++
		if i == len(arrivals) && at.After(last) && r.drained() {
			break
		}
	}
	return n
}

// drained reports whether everything buffered has been played.
func (r *Receiver) drained() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.playTS >= r.maxEnd
}
