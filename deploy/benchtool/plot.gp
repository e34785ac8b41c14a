# plot.gp — the two charts of deploy/bench, from the data it writes.
#
#   gnuplot -e "datafile='var/bench/plot.dat'; outdir='var/bench'; concs='1 4 16'" deploy/benchtool/plot.gp
#
# datafile holds one block per concurrency (in the order of `concs`, blocks
# separated by two blank lines, so `index i` selects one), each row:
#   batch tally_events_per_s influxdb_events_per_s tally_p99_ms influxdb_p99_ms
# Writes outdir/throughput.png (acknowledged events/s per batch size) and
# outdir/latency.png (p99 ack latency per batch size): Tally solid lines,
# InfluxDB dashed, one colour per concurrency.

n = words(concs)
set terminal pngcairo size 1000,620 font "sans,11"
set logscale x
set xtics ("100" 100, "1000" 1000, "5000" 5000)
set xrange [70:7000]
set xlabel "batch size (lines per request)"
set grid
set key outside right top
set style line 1 lc rgb "#1b9e77" lw 2 pt 7
set style line 2 lc rgb "#d95f02" lw 2 pt 7
set style line 3 lc rgb "#7570b3" lw 2 pt 7
set style line 4 lc rgb "#e7298a" lw 2 pt 7

set output outdir."/throughput.png"
set title "Acknowledged events per second (median of alternating pairs)"
set ylabel "events/s"
set format y "%.1s%c"
set yrange [0:*]
plot for [i=0:n-1] datafile index i using 1:2 with linespoints ls (i % 4 + 1) dt 1 title sprintf("tally c=%s", word(concs, i+1)), \
     for [i=0:n-1] datafile index i using 1:3 with linespoints ls (i % 4 + 1) dt 2 title sprintf("influxdb c=%s", word(concs, i+1))

set output outdir."/latency.png"
set title "p99 ack latency (median of alternating pairs)"
set ylabel "p99 latency (ms)"
set logscale y
set format y "%g"
set yrange [*:*]
plot for [i=0:n-1] datafile index i using 1:4 with linespoints ls (i % 4 + 1) dt 1 title sprintf("tally c=%s", word(concs, i+1)), \
     for [i=0:n-1] datafile index i using 1:5 with linespoints ls (i % 4 + 1) dt 2 title sprintf("influxdb c=%s", word(concs, i+1))
