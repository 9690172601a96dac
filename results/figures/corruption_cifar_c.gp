# moelab plot; edit and run: gnuplot corruption_cifar_c.gp
files = "png svg"
do for [f in files] {
  if (f eq "png") { set terminal pngcairo noenhanced size 900,560 } else { set terminal svg noenhanced size 900,560 }
  set output "corruption_cifar_c.".f
  set title "sweep robustness_routers: cifar_c error by severity (mean over corruptions; band: 95% CI over seeds)"
  set xlabel "severity (0 = clean test set)"
  set ylabel "error (1 - accuracy)"
  set xtics 1
  set key below
  set grid
  set style fill transparent solid 0.2 noborder
  plot "corruption_cifar_c.dat" index 0 using 1:3:4 with filledcurves lc 1 notitle, '' index 0 using 1:2 with linespoints lc 1 pt 7 title "topk", \
       "corruption_cifar_c.dat" index 1 using 1:3:4 with filledcurves lc 2 notitle, '' index 1 using 1:2 with linespoints lc 2 pt 7 title "aux_loss", \
       "corruption_cifar_c.dat" index 2 using 1:3:4 with filledcurves lc 3 notitle, '' index 2 using 1:2 with linespoints lc 3 pt 7 title "ssr", \
       "corruption_cifar_c.dat" index 3 using 1:3:4 with filledcurves lc 4 notitle, '' index 3 using 1:2 with linespoints lc 4 pt 7 title "usmoe", \
       "corruption_cifar_c.dat" index 4 using 1:3:4 with filledcurves lc 5 notitle, '' index 4 using 1:2 with linespoints lc 5 pt 7 title "expert_choice", \
       "corruption_cifar_c.dat" index 5 using 1:3:4 with filledcurves lc 6 notitle, '' index 5 using 1:2 with linespoints lc 6 pt 7 title "loss_free"
}
