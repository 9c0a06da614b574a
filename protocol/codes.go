package protocol

// Request types (client → server).
const (
	RequestAuth        = "auth"
	RequestSubscribe   = "subscribe"
	RequestUnsubscribe = "unsubscribe"
	RequestPing        = "ping"
	// RequestCredit grants the server n more pushed messages (flow
	// control); the first one turns flow control on for the connection.
	RequestCredit = "credit"
)

// Answer types (server → client, in reply to a request).
const (
	AnswerAuth        = "auth_response"
	AnswerSubscribe   = "subscribe_response"
	AnswerUnsubscribe = "unsubscribe_response"
	AnswerPong        = "pong"
	AnswerError       = "error"
)

// Push types (server → client, data messages).
const (
	TypeMarketData     = "market_data"
	TypeDepth          = "depth"
	TypeKline          = "kline"
	TypeOrderUpdate    = "order_update"
	TypePositionUpdate = "position_update"
	TypeAccountUpdate  = "account_update"
	TypeRiskAlert      = "risk_alert"
	TypeSystemNotice   = "system_notice"
	TypeStrategySignal = "strategy_signal"
)

// MessageTypes are every message type the protocol defines, in either
// direction (and "credit", the flow-control request). A notification's own
// type may be none of them: a client dispatches on type, and a published
// "auth_response" or "market_data" would be taken for the real thing.
var MessageTypes = []string{
	RequestAuth, RequestSubscribe, RequestUnsubscribe, RequestPing, "credit",
	AnswerAuth, AnswerSubscribe, AnswerUnsubscribe, AnswerPong, AnswerError,
	TypeMarketData, TypeDepth, TypeKline, TypeOrderUpdate, TypePositionUpdate, TypeAccountUpdate,
	TypeStrategySignal, "tick", "message",
	// The JS client's own events.
	"open", "close", "auth", "reconnecting", "reconnected", "resumed", "resume_failed", "duplicate", "gap",
}

// Permissions a token may carry.
const (
	PermReadMarketData = "read:market_data"
	PermReadSignals    = "read:signals"
	PermPublish        = "publish"
)

// Error codes of error answers and publish API errors.
const (
	CodeInvalidJSON          = "INVALID_JSON"
	CodeInvalidMessage       = "INVALID_MESSAGE"
	CodeUnknownType          = "UNKNOWN_TYPE"
	CodeUnknownChannel       = "UNKNOWN_CHANNEL"
	CodeUnknownSymbol        = "UNKNOWN_SYMBOL"
	CodeUnknownField         = "UNKNOWN_FIELD"
	CodeNotAuthenticated     = "NOT_AUTHENTICATED"
	CodeForbidden            = "FORBIDDEN"
	CodeRateLimited          = "RATE_LIMITED"
	CodeTooManySubscriptions = "TOO_MANY_SUBSCRIPTIONS"
	CodeAuthFailed           = "AUTH_FAILED"
	CodeTokenExpired         = "TOKEN_EXPIRED"
	CodeUnavailable          = "UNAVAILABLE"
	CodeInternal             = "INTERNAL"
	// CodeInvalidRequest: a well-formed request whose options do not apply
	// (interval_ms or conflate on a channel that does not take them, a
	// value out of range, or both at once).
	CodeInvalidRequest = "INVALID_REQUEST"
	// CodeOutcomeUnknown (publish API, 504): the broker took the message
	// but its answer was lost; it may be stored. Retry with the
	// idempotency key the error names.
	CodeOutcomeUnknown = "OUTCOME_UNKNOWN"
)

// Close codes.
const (
	CloseNormal      uint16 = 1000
	CloseGoingAway   uint16 = 1001
	CloseProtocol    uint16 = 1002
	CloseUnsupported uint16 = 1003
	// ClosePolicy: a fragmented message with too many fragments, or one
	// that took too long to complete.
	ClosePolicy   uint16 = 1008
	CloseTooLarge uint16 = 1009
	// CloseAuthFailed: authentication missing, invalid or timed out.
	CloseAuthFailed uint16 = 4001
	// CloseTokenExpired: the token expired while connected.
	CloseTokenExpired uint16 = 4002
	// CloseSlowConsumer: unconflatable messages piled up past the limit;
	// reconnect and resume.
	CloseSlowConsumer uint16 = 4008
	// CloseResumeRequired: a reliable stream this connection follows lost
	// its continuity (its store was reset, or a live message was lost and
	// history no longer holds it); reconnect and resubscribe with since and
	// epoch, which answers recovered:false where data was lost.
	CloseResumeRequired uint16 = 4009
	// CloseRateLimited: rate-limited messages kept coming, or the peer sent
	// more frames (of any kind) than its frame budget.
	CloseRateLimited uint16 = 4029
)

// Flow control and maximum frequency (docs/PROTOCOL.md, "Flow control").
// The server enforces the limits; the clients' grant policy is shared so
// the JavaScript and Python clients behave alike.
const (
	// FlowMaxCredit bounds one credit message's n and the credit a
	// connection may hold (a larger total is clipped).
	FlowMaxCredit = 1_000_000
	// FlowInitialCredit is what a client grants when a connection opens.
	FlowInitialCredit = 32
	// FlowMinGrant and FlowMaxGrant bound every later grant.
	FlowMinGrant = 8
	FlowMaxGrant = 1000
	// FlowGrantMillis: a grant covers about this much of the application's
	// measured handling time.
	FlowGrantMillis = 250
	// FlowMinIntervalMillis and FlowMaxIntervalMillis bound a market
	// subscription's interval_ms (0 or absent: every update).
	FlowMinIntervalMillis = 10
	FlowMaxIntervalMillis = 60_000
)

// TimeLayout is every wire timestamp: RFC 3339, UTC, milliseconds, Z suffix.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"
