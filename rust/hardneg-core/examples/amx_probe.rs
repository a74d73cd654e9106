fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|x| x.parse().unwrap()).collect();
    println!("peak {:.0} GFLOP/s", hardneg_core::topk::amx::peak_flops(20_000_000).unwrap() / 1e9);
    for _ in 0..2 {
        for &ks in &a[4..] {
            println!("micro rows={} d={} q={} ks={ks}: {:.0} GFLOP/s", a[0], a[1], a[2], hardneg_core::topk::amx::microkernel_flops(a[0], a[1], a[2], ks, a[3]).unwrap() / 1e9);
        }
    }
    println!("peak {:.0} GFLOP/s", hardneg_core::topk::amx::peak_flops(20_000_000).unwrap() / 1e9);
}
