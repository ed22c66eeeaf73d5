//! Time one critic step of Module I at the paper's sizes: forward on real
//! and fake cells, backward of `−mean D(x) + mean D(x̂)`, the gradient
//! penalty with its double backward, and one Adam step.
//!
//! `cargo run --release --example critic_step [batch] [genes] [steps]`
//! (defaults 128, 3000, 50).

use std::time::Instant;

use acsleuth::backend::rng::{self, Stream};
use acsleuth::backend::{Backend, CpuBackend};
use acsleuth::model::critic::{Critic, CriticConfig, Grads};
use acsleuth::nn::params::{zero_grads, Adam};

fn main() {
    // As the command line does: this thread works as worker 0 of the pool.
    acsleuth::backend::thread_pool::init_global(None);
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let batch = args.first().copied().unwrap_or(128);
    let genes = args.get(1).copied().unwrap_or(3000);
    let steps = args.get(2).copied().unwrap_or(50);

    let be = CpuBackend::new();
    let cfg = CriticConfig::new(genes);
    let mut critic = Critic::new(&be, &cfg, &mut Stream::new(1));
    let mut adam = Adam::new(1e-4, 0.5, 0.999);
    let mut host = vec![0.0f32; batch * genes];
    rng::fill_normal(2, 0, 0.5, 1.0, &mut host);
    host.iter_mut().for_each(|x| *x = x.max(0.0));
    let x_real = be.upload(&host);
    rng::fill_normal(3, 0, 0.3, 1.0, &mut host);
    host.iter_mut().for_each(|x| *x = x.max(0.0));
    let x_fake = be.upload(&host);
    let no = batch * cfg.out_dim;
    let (mut dy_real, mut dy_fake) = (be.zeros(no), be.zeros(no));
    be.fill(&mut dy_real, -1.0 / no as f32);
    be.fill(&mut dy_fake, 1.0 / no as f32);

    let mut step = |t: u64| {
        zero_grads(&be, &mut critic);
        critic.forward(&be, &x_real, batch, true);
        critic.backward(&be, &dy_real, Grads::PARAMS);
        critic.forward(&be, &x_fake, batch, true);
        critic.backward(&be, &dy_fake, Grads::PARAMS);
        let gp = critic.gradient_penalty(&be, &x_real, &x_fake, batch, 10.0, 99, t * batch as u64);
        adam.step(&be, &mut critic);
        gp
    };
    for t in 0..3 {
        step(t);
    }
    let t0 = Instant::now();
    let mut gp = 0.0;
    for t in 0..steps {
        gp = step(3 + t as u64);
    }
    let per = t0.elapsed().as_secs_f64() / steps as f64;
    println!(
        "critic step (batch {batch}, G {genes}, {} threads): {:.2} ms/step over {steps} steps (last GP {gp:.4})",
        rayon::current_num_threads(),
        per * 1e3
    );
    // Breakdown of one step.
    let n = steps.max(1) as u32;
    let (mut t_fb, mut t_gp, mut t_adam) = (0.0, 0.0, 0.0);
    for t in 0..n {
        zero_grads(&be, &mut critic);
        let s = Instant::now();
        critic.forward(&be, &x_real, batch, true);
        critic.backward(&be, &dy_real, Grads::PARAMS);
        critic.forward(&be, &x_fake, batch, true);
        critic.backward(&be, &dy_fake, Grads::PARAMS);
        t_fb += s.elapsed().as_secs_f64();
        let s = Instant::now();
        critic.gradient_penalty(&be, &x_real, &x_fake, batch, 10.0, 99, (1000 + t as u64) * batch as u64);
        t_gp += s.elapsed().as_secs_f64();
        let s = Instant::now();
        adam.step(&be, &mut critic);
        t_adam += s.elapsed().as_secs_f64();
    }
    let ms = |x: f64| x * 1e3 / n as f64;
    println!(
        "  forward+backward on real and fake {:.2} ms, gradient penalty {:.2} ms, Adam {:.2} ms",
        ms(t_fb),
        ms(t_gp),
        ms(t_adam)
    );
}
