package obs

import "errors"

// Sentinel errors of sensors/. Callers test them with errors.Is; every error
// returned by sensors/ packages wraps one of these or names its input.
var (
	// ErrNoBus: the configured bus (I²C, 1-wire) does not exist on this machine.
	ErrNoBus = errors.New("no such bus")
	// ErrNotPresent: an optional source (RAPL, NVML) is absent. Not a fault.
	ErrNotPresent = errors.New("not present")
	// ErrWrongChip: a device answered with an unexpected chip id.
	ErrWrongChip = errors.New("wrong chip id")
	// ErrStuck: a sensor keeps returning the same value (or a reset value).
	ErrStuck = errors.New("stuck value")
	// ErrBadConfig: the sensor configuration is invalid.
	ErrBadConfig = errors.New("invalid sensor config")
	// ErrUnknownStream: no stream of that id is configured or stored.
	ErrUnknownStream = errors.New("unknown stream")
	// ErrClockNotSet: the wall clock is before 2020 (no RTC, no NTP yet);
	// readings are not stored until it is set.
	ErrClockNotSet = errors.New("wall clock not set")
	// ErrCorrupt: stored bytes could not be decoded.
	ErrCorrupt = errors.New("corrupt stored record")
	// ErrClosed: the component was closed.
	ErrClosed = errors.New("closed")
	// ErrTooManyPoints: a series query would return too many points.
	ErrTooManyPoints = errors.New("too many points")
)
