# SPDX-License-Identifier: LGPL-2.1-or-later
# wait.sh: bounded waits for shell tests (a port listening, a log line, N log lines, a process gone, tcpdump stopped whole); no side effects when sourced.
#
# tests/vm/lib.sh sources it; tests that do not use the VM rig source it
# alone: . "$UG_SRCDIR/tests/vm/wait.sh". Every wait polls every 0.1 s and
# counts its polls, so a loaded machine makes it slower, never shorter.

# ug_wait SECONDS CMD...: until CMD (a command or shell function) succeeds;
# 1 when it did not within SECONDS.
ug_wait() {
	_w_n=$(($1 * 10))
	shift
	while [ $_w_n -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		_w_n=$((_w_n - 1))
	done
	"$@"
}

_ug_listening() { [ -n "$(ss -Htln "sport = :$1")" ]; }
_ug_matches() { grep -Eq -- "$2" "$1" 2>/dev/null; }
_ug_count_ge() {
	_w_c=$(grep -Ec -- "$2" "$1" 2>/dev/null)
	[ "${_w_c:-0}" -ge "$3" ]
}
_ug_gone() { ! kill -0 "$1" 2>/dev/null; }

# ug_wait_listen PORT SECONDS: until something listens on TCP PORT (any
# local address).
ug_wait_listen() { ug_wait "$2" _ug_listening "$1"; }

# ug_wait_match FILE ERE SECONDS: until a line of FILE matches the extended
# regular expression.
ug_wait_match() { ug_wait "$3" _ug_matches "$1" "$2"; }

# ug_wait_count FILE ERE N SECONDS: until at least N lines of FILE match.
ug_wait_count() { ug_wait "$4" _ug_count_ge "$1" "$2" "$3"; }

# ug_wait_gone PIDFILE SECONDS: until the process whose PID is in PIDFILE has
# ended (or the file is gone).
ug_wait_gone() { ug_wait "$2" _ug_gone "$(cat "$1" 2>/dev/null)"; }

# ug_stop_tcpdump PID: stops a `tcpdump -U -w FILE` so that FILE holds every
# frame it captured, and waits (10 s) until it has ended. tcpdump hands
# frames over in blocks at most 1 s old, and a SIGINT drops the block not
# yet handed over, so the SIGINT comes once the last traffic is 1.5 s old.
# (--immediate-mode would hand each frame over at once, but it gives libpcap
# ring slots of the whole snapshot length: the ring then holds a few frames
# and drops the rest when tcpdump falls behind.)
ug_stop_tcpdump() {
	sleep 1.5
	kill -INT "$1" 2>/dev/null
	ug_wait 10 _ug_gone "$1"
}
