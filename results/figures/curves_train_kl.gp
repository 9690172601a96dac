# moelab plot; edit and run: gnuplot curves_train_kl.gp
files = "png svg"
do for [f in files] {
  if (f eq "png") { set terminal pngcairo noenhanced size 900,560 } else { set terminal svg noenhanced size 900,560 }
  set output "curves_train_kl.".f
  set xlabel "step"
  set ylabel "train/kl"
  set title "sweep moefication_lm: train/kl (mean over seeds, band min-max)"
  set key below
  set grid
  set style fill transparent solid 0.2 noborder
  plot "curves_train_kl.dat" index 0 using 1:3:4 with filledcurves lc 1 notitle, '' index 0 using 1:2 with linespoints lc 1 pt 7 ps 0.5 title "random, random, 2", \
       "curves_train_kl.dat" index 1 using 1:3:4 with filledcurves lc 2 notitle, '' index 1 using 1:2 with linespoints lc 2 pt 7 ps 0.5 title "random, random, 8", \
       "curves_train_kl.dat" index 2 using 1:3:4 with filledcurves lc 3 notitle, '' index 2 using 1:2 with linespoints lc 3 pt 7 ps 0.5 title "weight_cluster, random, 2", \
       "curves_train_kl.dat" index 3 using 1:3:4 with filledcurves lc 4 notitle, '' index 3 using 1:2 with linespoints lc 4 pt 7 ps 0.5 title "activation_cluster, random, 2", \
       "curves_train_kl.dat" index 4 using 1:3:4 with filledcurves lc 5 notitle, '' index 4 using 1:2 with linespoints lc 5 pt 7 ps 0.5 title "dot_moe, random, 2", \
       "curves_train_kl.dat" index 5 using 1:3:4 with filledcurves lc 6 notitle, '' index 5 using 1:2 with linespoints lc 6 pt 7 ps 0.5 title "dot_moe, activation_cluster, 2"
}
