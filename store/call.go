package store

import "time"

// Direction says which side placed the call.
type Direction string

const (
	DirectionIncoming Direction = "incoming"
	DirectionOutgoing Direction = "outgoing"
)

// Valid reports whether d is one of the known directions.
func (d Direction) Valid() bool {
	switch d {
	case DirectionIncoming, DirectionOutgoing:
		return true
	}
	return false
}

// CallStatus is where a call is in its life.
type CallStatus string

const (
	StatusDialing     CallStatus = "dialing"
	StatusRinging     CallStatus = "ringing"
	StatusProgressing CallStatus = "progressing" // answered, media flowing
	StatusTerminating CallStatus = "terminating"
	StatusCanceling   CallStatus = "canceling"
	StatusHangup      CallStatus = "hangup"
)

// Valid reports whether s is one of the known statuses.
func (s CallStatus) Valid() bool {
	switch s {
	case StatusDialing, StatusRinging, StatusProgressing, StatusTerminating, StatusCanceling, StatusHangup:
		return true
	}
	return false
}

// HangupBy says which side ended the call; empty while it is not over.
type HangupBy string

const (
	HangupByNone   HangupBy = ""
	HangupByLocal  HangupBy = "local"
	HangupByRemote HangupBy = "remote"
)

// Valid reports whether h is one of the known values, including empty.
func (h HangupBy) Valid() bool {
	switch h {
	case HangupByNone, HangupByLocal, HangupByRemote:
		return true
	}
	return false
}

// HangupReason is why a call ended; empty while it is not over.
type HangupReason string

const (
	ReasonNone           HangupReason = ""
	ReasonNormal         HangupReason = "normal"
	ReasonFailed         HangupReason = "failed"
	ReasonBusy           HangupReason = "busy"
	ReasonCancel         HangupReason = "cancel"
	ReasonTimeout        HangupReason = "timeout"
	ReasonNoAnswer       HangupReason = "noanswer"
	ReasonDialout        HangupReason = "dialout"
	ReasonAMD            HangupReason = "amd"
	ReasonServerShutdown HangupReason = "server_shutdown"
	ReasonServerRestart  HangupReason = "server_restart"
	ReasonCodec          HangupReason = "codec"
	ReasonError          HangupReason = "error"
	ReasonAPI            HangupReason = "api" // hung up over the control API
)

// Valid reports whether r is one of the known reasons, including empty.
func (r HangupReason) Valid() bool {
	switch r {
	case ReasonNone, ReasonNormal, ReasonFailed, ReasonBusy, ReasonCancel, ReasonTimeout, ReasonNoAnswer,
		ReasonDialout, ReasonAMD, ReasonServerShutdown, ReasonServerRestart, ReasonCodec, ReasonError,
		ReasonAPI:
		return true
	}
	return false
}

// Call is the record of one call. Times are UTC with millisecond precision:
// CreateCall and UpdateCall normalise them in place, so the struct a caller
// holds equals what GetCall later returns.
type Call struct {
	ID             string       `json:"id"` // UUID v4, set by CreateCall if empty
	SIPCallID      string       `json:"sip_call_id"`
	Direction      Direction    `json:"direction"`
	Source         string       `json:"source"`      // From URI, e.g. "sip:alice@127.0.0.1:5062"
	Destination    string       `json:"destination"` // To / Request-URI, e.g. "sip:echo@127.0.0.1"
	SourceAddr     string       `json:"source_addr"` // "ip:port" the INVITE came from
	Status         CallStatus   `json:"status"`
	HangupBy       HangupBy     `json:"hangup_by"`
	HangupReason   HangupReason `json:"hangup_reason"`
	SIPCode        int          `json:"sip_code,omitempty"` // final SIP code relevant to the hangup (e.g. 487, 488)
	Codec          string       `json:"codec"`              // "PCMU", "PCMA" or ""
	DTMF           string       `json:"dtmf"`               // digits received during the call, in order
	RTPPacketsIn   uint64       `json:"rtp_packets_in"`
	RTPPacketsOut  uint64       `json:"rtp_packets_out"`
	RTPPacketsLost uint64       `json:"rtp_packets_lost"`
	TMCreate       time.Time    `json:"tm_create"`
	TMRinging      *time.Time   `json:"tm_ringing"`
	TMProgressing  *time.Time   `json:"tm_progressing"` // answered
	TMHangup       *time.Time   `json:"tm_hangup"`
	// FlowID is the flow the call started with.
	FlowID string `json:"flow_id"`
	// MasterCallID is, for a leg placed by another call (connect), that
	// call's id; "" otherwise.
	MasterCallID string `json:"master_call_id,omitempty"`
	// Quality is the media quality measured on the call, set at hangup.
	Quality *CallQuality `json:"quality,omitempty"`
	// Variables are the call's flow variables when it was last written.
	Variables map[string]string `json:"variables"`
	// Warnings note things that went wrong without ending the call (an
	// unknown variable, an action that failed).
	Warnings []string `json:"warnings"`
}

// CallQuality is what the media engine measured on a call's inbound audio
// (the jitter buffer) and learned from the peer's RTCP reports.
type CallQuality struct {
	PacketsLate   uint64  `json:"packets_late"` // arrived after their playout time, or duplicates
	Duplicates    uint64  `json:"duplicates"`
	Reordered     uint64  `json:"reordered"`
	ConcealedMS   float64 `json:"concealed_ms"`
	JitterMS      float64 `json:"jitter_ms"` // RFC 3550 interarrival jitter
	DelayMSMean   float64 `json:"delay_ms_mean"`
	DelayMSP95    float64 `json:"delay_ms_p95"` // added by the jitter buffer
	RTTMS         float64 `json:"rtt_ms"`       // from RTCP, 0 when unknown
	RemoteLost    int64   `json:"remote_lost"`  // our packets the peer reported lost
	RFactor       float64 `json:"r_factor"`
	MOS           float64 `json:"mos"`
	SendLateP99MS float64 `json:"send_late_p99_ms"` // our pacing
}
