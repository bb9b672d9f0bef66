# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-usbredirsrv.guest.sh: consumer guest of bench-usbredirsrv.sh: timed whole-disk reads, then timed 4 KiB reads.
#
# Sources storage.sh (UG_READS timed 1 MiB O_DIRECT reads of the whole disk),
# then reads UG_SMALL (default 4096) blocks of 4 KiB with O_DIRECT, one USB
# transfer each, and prints UG-RESULT small n=N seconds=S tps=T.
. /ug/guest/storage.sh
n=${UG_SMALL:-4096}
t0=$(uptime_s)
dd if="$disk" of=/dev/null bs=4096 count="$n" iflag=direct 2>/dev/null || {
	echo "UG-FAIL small reads"
	exit 1
}
t1=$(uptime_s)
s=$(elapsed "$t0" "$t1")
echo "UG-RESULT small n=$n seconds=$s tps=$(awk -v n="$n" -v s="$s" 'BEGIN { if (s <= 0) s = 0.01; printf "%.0f", n / s }')"
