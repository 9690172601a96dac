# moelab plot; edit and run: gnuplot routers_2026_load.gp
files = "png svg"
do for [f in files] {
  if (f eq "png") { set terminal pngcairo noenhanced size 1260,1040 } else { set terminal svg noenhanced size 1260,1040 }
  set output "routers_2026_load.".f
  set multiplot layout 3,3 title "sweep routers_2026: load_max_over_mean per block over training (mean over seeds)"
  set xlabel "step"
  set ylabel "block"
  set cblabel "load_max_over_mean"
  set cbrange [1.0709635416666667:1.888671875]
  set palette rgb 33,13,10
  set ytics 1
  set autoscale xfix
  set autoscale yfix
  set title "topk"
  plot "routers_2026_load.dat" index 0 using 1:2:3 with image notitle
  set title "aux_loss"
  plot "routers_2026_load.dat" index 1 using 1:2:3 with image notitle
  set title "loss_free"
  plot "routers_2026_load.dat" index 2 using 1:2:3 with image notitle
  set title "ssr"
  plot "routers_2026_load.dat" index 3 using 1:2:3 with image notitle
  set title "usmoe"
  plot "routers_2026_load.dat" index 4 using 1:2:3 with image notitle
  set title "quantile"
  plot "routers_2026_load.dat" index 5 using 1:2:3 with image notitle
  set title "deepseek_v3"
  plot "routers_2026_load.dat" index 6 using 1:2:3 with image notitle
  set title "topp"
  plot "routers_2026_load.dat" index 7 using 1:2:3 with image notitle
  set title "remoe"
  plot "routers_2026_load.dat" index 8 using 1:2:3 with image notitle
  unset multiplot
}
