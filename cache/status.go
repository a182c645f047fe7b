package cache

// Status is a request's cache status, with nginx's $upstream_cache_status
// names.
type Status uint8

const (
	StatusNone        Status = iota // not a cacheable request: no status
	StatusMiss                      // not in the cache; fetched
	StatusHit                       // fresh entry served
	StatusBypass                    // looked-up skipped: private request or refresh listener
	StatusExpired                   // entry was stale; fetched anew
	StatusStale                     // stale entry served (backend failing or updating elsewhere)
	StatusUpdating                  // stale entry served while a background update runs
	StatusRevalidated               // stale entry confirmed by the backend (304)
	numStatuses
)

var statusNames = [numStatuses]string{"", "MISS", "HIT", "BYPASS", "EXPIRED", "STALE", "UPDATING", "REVALIDATED"}

func (s Status) String() string { return statusNames[s] }

// Statuses lists every status but StatusNone, for metrics.
func Statuses() []Status {
	return []Status{StatusMiss, StatusHit, StatusBypass, StatusExpired, StatusStale, StatusUpdating, StatusRevalidated}
}
