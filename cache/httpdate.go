package cache

import "time"

// ParseHTTPDate parses an HTTP-date exactly as RFC 9110 §5.6.7 defines it:
// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), or one of the obsolete
// rfc850-date ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime-date ("Sun Nov
// 6 08:49:37 1994") forms. Go's http.ParseTime accepts far more (one-digit
// hours, runs of spaces, any zone name), and an Expires that a strict
// reader rejects means "already expired" (RFC 9111 §5.3), so the grammar
// is hand-written here. As the RFC's robustness note allows, "GMT" is
// accepted in any case. now resolves rfc850's two-digit year (a year more
// than 50 years ahead is the one a century before).
func ParseHTTPDate(s string, now time.Time) (time.Time, bool) {
	switch {
	case len(s) == len("Sun, 06 Nov 1994 08:49:37 GMT") && s[3] == ',':
		return parseIMFFixdate(s)
	case len(s) == len("Sun Nov  6 08:49:37 1994") && s[3] == ' ':
		return parseAsctime(s)
	default:
		return parseRFC850(s, now)
	}
}

var (
	dayNames     = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	longDayNames = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	monthNames   = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// parseIMFFixdate: day-name "," SP day SP month SP year SP time-of-day SP GMT.
func parseIMFFixdate(s string) (time.Time, bool) {
	if !isDayName(s[:3]) || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[25] != ' ' {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	month, ok2 := monthOf(s[8:11])
	year, ok3 := digits(s[12:16])
	if !ok1 || !ok2 || !ok3 || !isGMT(s[26:]) {
		return time.Time{}, false
	}
	return dateTime(year, month, day, s[17:25])
}

// parseRFC850: day-name-l "," SP day "-" month "-" 2DIGIT SP time-of-day SP GMT.
func parseRFC850(s string, now time.Time) (time.Time, bool) {
	comma := -1
	for i := 0; i < len(s) && i < 10; i++ {
		if s[i] == ',' {
			comma = i
			break
		}
	}
	if comma < 0 || !isLongDayName(s[:comma]) {
		return time.Time{}, false
	}
	rest := s[comma+1:]
	// SP 06-Nov-94 SP 08:49:37 SP GMT
	if len(rest) != len(" 06-Nov-94 08:49:37 GMT") || rest[0] != ' ' || rest[3] != '-' || rest[7] != '-' || rest[10] != ' ' || rest[19] != ' ' {
		return time.Time{}, false
	}
	day, ok1 := digits(rest[1:3])
	month, ok2 := monthOf(rest[4:7])
	yy, ok3 := digits(rest[8:10])
	if !ok1 || !ok2 || !ok3 || !isGMT(rest[20:]) {
		return time.Time{}, false
	}
	year := now.UTC().Year()/100*100 + yy
	if year > now.UTC().Year()+50 {
		year -= 100
	}
	return dateTime(year, month, day, rest[11:19])
}

// parseAsctime: day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP year.
func parseAsctime(s string) (time.Time, bool) {
	if !isDayName(s[:3]) || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	month, ok1 := monthOf(s[4:7])
	var day int
	var ok2 bool
	if s[8] == ' ' {
		day, ok2 = digits(s[9:10])
	} else {
		day, ok2 = digits(s[8:10])
	}
	year, ok3 := digits(s[20:24])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	return dateTime(year, month, day, s[11:19])
}

// dateTime checks the ranges and builds the instant; hms is "HH:MM:SS".
// A leap second (60) is allowed by the grammar and folds into the next
// minute.
func dateTime(year int, month time.Month, day int, hms string) (time.Time, bool) {
	if hms[2] != ':' || hms[5] != ':' {
		return time.Time{}, false
	}
	hour, ok1 := digits(hms[0:2])
	minute, ok2 := digits(hms[3:5])
	sec, ok3 := digits(hms[6:8])
	if !ok1 || !ok2 || !ok3 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	if day < 1 || day > daysIn(month, year) {
		return time.Time{}, false
	}
	return time.Date(year, month, day, hour, minute, sec, 0, time.UTC), true
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// digits reads a fixed run of ASCII digits.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(s) > 0
}

func isDayName(s string) bool {
	for _, d := range dayNames {
		if s == d {
			return true
		}
	}
	return false
}

func isLongDayName(s string) bool {
	for _, d := range longDayNames {
		if s == d {
			return true
		}
	}
	return false
}

func monthOf(s string) (time.Month, bool) {
	for i, m := range monthNames {
		if s == m {
			return time.Month(i + 1), true
		}
	}
	return 0, false
}

// isGMT accepts "GMT" in any case (RFC 9110 §5.6.7 asks recipients to be
// robust to it; nothing else is a time zone there).
func isGMT(s string) bool {
	return len(s) == 3 && s[0]|0x20 == 'g' && s[1]|0x20 == 'm' && s[2]|0x20 == 't'
}
