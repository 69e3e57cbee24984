package meta

import (
	"errors"
	"strings"
)

// Kind is why a message is on the error topic: the error record's `kind`.
type Kind string

// The error kinds of the contract (contract.md, "Output: iot_errors").
const (
	// KindDecode: not JSON, even after accepting Python's non-finite tokens, or not an object.
	KindDecode Kind = "decode"
	// KindValidation: JSON, but it breaks the input contract.
	KindValidation Kind = "validation"
	// KindWrite: InfluxDB rejected the point.
	KindWrite Kind = "write"
)

// Kinds lists every kind, in the order the error record reports them.
var Kinds = []Kind{KindDecode, KindValidation, KindWrite}

// Error is a message's own failure with its kind. Its text is "<kind>: <reason>", the error
// record's `error`, so the kind survives where the engine passes an error on as text only (the
// fallback's fallback_error metadata).
type Error struct {
	Kind   Kind
	Reason string
}

func (e *Error) Error() string { return string(e.Kind) + ": " + e.Reason }

// DecodeError, ValidationError and WriteError are a failure of each kind.
func DecodeError(reason string) *Error     { return &Error{Kind: KindDecode, Reason: reason} }
func ValidationError(reason string) *Error { return &Error{Kind: KindValidation, Reason: reason} }
func WriteError(reason string) *Error      { return &Error{Kind: KindWrite, Reason: reason} }

// KindOf is the kind of a failure: the kind of an *Error in err's chain, else the kind its text
// starts with (an error that crossed the engine as text), and false when it has none.
func KindOf(err error) (Kind, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, true
	}
	if err == nil {
		return "", false
	}
	return KindOfText(err.Error())
}

// KindOfText is the kind a failure's text starts with ("validation: ..."), and false when it
// starts with none.
func KindOfText(text string) (Kind, bool) {
	for _, k := range Kinds {
		if len(text) >= len(k)+2 && strings.HasPrefix(text, string(k)) && text[len(k)] == ':' && text[len(k)+1] == ' ' {
			return k, true
		}
	}
	return "", false
}
