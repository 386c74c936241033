package openairt

import (
	"encoding/json"

	"github.com/voxbridge/voxbridge/agent"
)

// Client events and session shapes of the Realtime API, GA and beta.

type audioFormat struct {
	Type string `json:"type"` // "audio/pcmu"
}

type turnDetection struct {
	Type              string   `json:"type"` // "server_vad"
	Threshold         *float64 `json:"threshold,omitempty"`
	PrefixPaddingMS   *int     `json:"prefix_padding_ms,omitempty"`
	SilenceDurationMS *int     `json:"silence_duration_ms,omitempty"`
	CreateResponse    *bool    `json:"create_response,omitempty"`
	InterruptResponse *bool    `json:"interrupt_response,omitempty"`
}

type transcription struct {
	Model    string `json:"model"`
	Language string `json:"language,omitempty"`
}

type wireTool struct {
	Type        string          `json:"type"` // "function"
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

// gaSession is the GA session object (type "realtime" or "transcription").
type gaSession struct {
	Type             string     `json:"type"`
	Model            string     `json:"model,omitempty"`
	OutputModalities []string   `json:"output_modalities,omitempty"`
	Instructions     string     `json:"instructions,omitempty"`
	Audio            gaAudio    `json:"audio"`
	Tools            []wireTool `json:"tools,omitempty"`
	ToolChoice       string     `json:"tool_choice,omitempty"`
}

type gaAudio struct {
	Input  gaInput   `json:"input"`
	Output *gaOutput `json:"output,omitempty"`
}

type gaInput struct {
	Format        audioFormat    `json:"format"`
	Transcription *transcription `json:"transcription,omitempty"`
	TurnDetection *turnDetection `json:"turn_detection,omitempty"`
}

type gaOutput struct {
	Format audioFormat `json:"format"`
	Voice  string      `json:"voice,omitempty"`
}

// betaSession is the beta session object; the transcription session uses
// the input fields only.
type betaSession struct {
	Modalities              []string       `json:"modalities,omitempty"`
	Instructions            string         `json:"instructions,omitempty"`
	Voice                   string         `json:"voice,omitempty"`
	InputAudioFormat        string         `json:"input_audio_format"` // "g711_ulaw"
	OutputAudioFormat       string         `json:"output_audio_format,omitempty"`
	InputAudioTranscription *transcription `json:"input_audio_transcription,omitempty"`
	TurnDetection           *turnDetection `json:"turn_detection,omitempty"`
	Tools                   []wireTool     `json:"tools,omitempty"`
	ToolChoice              string         `json:"tool_choice,omitempty"`
}

type sessionUpdate struct {
	Type    string `json:"type"` // "session.update" or (beta) "transcription_session.update"
	Session any    `json:"session"`
}

type appendAudio struct {
	Type  string `json:"type"` // "input_audio_buffer.append"
	Audio string `json:"audio"`
}

type simpleEvent struct {
	Type string `json:"type"`
}

type itemCreate struct {
	Type string         `json:"type"` // "conversation.item.create"
	Item functionOutput `json:"item"`
}

type functionOutput struct {
	Type   string `json:"type"` // "function_call_output"
	CallID string `json:"call_id"`
	Output string `json:"output"`
}

type itemTruncate struct {
	Type         string `json:"type"` // "conversation.item.truncate"
	ItemID       string `json:"item_id"`
	ContentIndex int    `json:"content_index"`
	AudioEndMS   int64  `json:"audio_end_ms"`
}

func (c Config) turnDetection(createResponse bool) *turnDetection {
	td := &turnDetection{Type: "server_vad", CreateResponse: &createResponse}
	if c.VAD.Threshold > 0 {
		td.Threshold = &c.VAD.Threshold
	}
	if c.VAD.PrefixPaddingMS > 0 {
		td.PrefixPaddingMS = &c.VAD.PrefixPaddingMS
	}
	if c.VAD.SilenceMS > 0 {
		td.SilenceDurationMS = &c.VAD.SilenceMS
	}
	if createResponse {
		interrupt := true
		td.InterruptResponse = &interrupt
	}
	return td
}

func wireTools(tools []agent.Tool) []wireTool {
	var out []wireTool
	for _, t := range tools {
		params := t.Parameters
		if len(params) == 0 {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out = append(out, wireTool{Type: "function", Name: t.Name, Description: t.Description, Parameters: params})
	}
	return out
}

// Server events: one struct holds the fields of every event we read.
type serverEvent struct {
	Type       string `json:"type"`
	ItemID     string `json:"item_id"`
	Delta      string `json:"delta"`
	Transcript string `json:"transcript"`
	CallID     string `json:"call_id"`
	Name       string `json:"name"`
	Arguments  string `json:"arguments"`
	Error      *struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Item     *outputItem `json:"item"`
	Response *struct {
		Status        string       `json:"status"`
		Output        []outputItem `json:"output"`
		StatusDetails *struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
			Error  *struct {
				Type    string `json:"type"`
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"status_details"`
	} `json:"response"`
}

type outputItem struct {
	ID        string `json:"id"`
	Type      string `json:"type"` // "message", "function_call", ...
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}
