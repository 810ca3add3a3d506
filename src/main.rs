//! Parses the command line, sets up logging, loads the settings, dispatches to a subcommand and
//! maps errors to exit codes: 0 ok, 1 the operation failed, 2 bad usage (flags, config, input).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::CommandFactory;
use tracing_subscriber::EnvFilter;

use factorypal::cli::{Cli, Command, CommandLine, ConfigCommand};
use factorypal::cli::{ConsumeArgs, LogFormat, ProduceArgs};
use factorypal::consume::{self, ConsumeOptions, PartitionSelection};
use factorypal::failure::Failure;
use factorypal::produce::{self, ProduceOptions};
use factorypal::settings::{Settings, SettingsSources};
use factorypal::status::{Status, server::serve_while};
use factorypal::{admin, api, gen_data, shutdown};

fn main() -> ExitCode {
    let CommandLine { cli, settings } = CommandLine::parse();
    if matches!(
        cli.command,
        Command::Consume(_) | Command::Produce(_) | Command::Run(_) | Command::ServeApi(_)
    ) {
        purge_freed_memory_at_once();
    }
    init_logging(cli.global.verbose, cli.global.quiet, cli.global.log_format);
    match run(cli, &settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(cli: Cli, sources: &SettingsSources) -> Result<(), Failure> {
    if let Command::Completions { shell } = cli.command {
        // Needs no settings: works even where the config is broken.
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "factorypal", &mut std::io::stdout());
        return Ok(());
    }
    let settings = Settings::load(sources)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        Failure::failed(anyhow::Error::new(e).context("cannot start the async runtime"))
    })?;
    let status_bind = settings.status.bind_addr();
    runtime.block_on(async move {
        match &cli.command {
            Command::ServeApi(_) => Ok(api::run(&settings.api, shutdown::install()).await?),
            Command::Admin(command) => Ok(admin::run(&settings, command).await?),
            Command::Produce(args) => {
                let options = produce_options(args);
                let status = Status::new("produce");
                let work = produce::run(&settings, &options, &status, shutdown::install());
                serve_while(status_bind, &status, work).await?;
                Ok(())
            }
            Command::Run(args) => {
                let options = factorypal::run::RunOptions {
                    until_drained: args.until_drained,
                };
                let status = Status::new("run");
                let work = factorypal::run::run(&settings, &options, &status, shutdown::install());
                Ok(serve_while(status_bind, &status, work).await?)
            }
            Command::Consume(args) => {
                let options = consume_options(args, &settings)?;
                let status = Status::new("consume");
                let work = consume::run(&settings, &options, &status, shutdown::install());
                serve_while(status_bind, &status, work).await?;
                Ok(())
            }
            Command::Compact(args) => {
                Ok(factorypal::compact::run(&settings, args.topics.as_deref()).await?)
            }
            Command::Report(args) => {
                let window = factorypal::report::Window {
                    from: args.from,
                    to: args.to,
                };
                let written = factorypal::report::run(&settings, window).await?;
                for verdict in &written.verdicts {
                    println!("{verdict}");
                }
                for file in &written.files {
                    println!("wrote {}", file.display());
                }
                Ok(())
            }
            Command::GenData(args) => {
                let written =
                    gen_data::generate(&args.out, args.seed, args.metrics, args.workorders)
                        .map_err(Failure::failed)?;
                println!(
                    "wrote {} metrics and {} workorder records to {}",
                    written.metrics,
                    written.workorders,
                    args.out.display()
                );
                Ok(())
            }
            Command::Config(ConfigCommand::Show) => {
                print!("{}", settings.to_toml()?);
                Ok(())
            }
            Command::Completions { .. } => Ok(()), // printed above, before the settings load
        }
    })
}

/// What `produce` was asked for, beyond the settings.
fn produce_options(args: &ProduceArgs) -> ProduceOptions {
    ProduceOptions {
        sources: args.sources.clone(),
        all: args.all,
        create_topics: args.create_topics,
        resume: args.resume,
    }
}

/// What `consume` was asked for, beyond the settings; a bad `--instance` is a usage error.
fn consume_options(args: &ConsumeArgs, settings: &Settings) -> Result<ConsumeOptions, Failure> {
    let partitions = match (&args.partitions, &args.instance) {
        (Some(list), _) => PartitionSelection::List(list.clone()),
        (None, Some(instance)) => PartitionSelection::parse_instance(instance)
            .map_err(|why| Failure::usage(format!("--instance {instance}: {why}")))?,
        (None, None) => PartitionSelection::All,
    };
    Ok(ConsumeOptions {
        sink: settings.consumer.sink,
        topics: args.topics.clone(),
        partitions,
        print_summaries: true,
        overwrite: args.overwrite,
    })
}

fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    // rskafka logs every retry and every broker error it hands back to us; we report those
    // ourselves with context, so its own lines only show with -v.
    let directives = match (quiet, verbose) {
        (true, _) => "error,rskafka=off",
        (false, 0) => "warn,rskafka=off,factorypal=info",
        (false, 1) => "info,rskafka=warn,factorypal=debug",
        (false, _) => "debug,factorypal=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// mimalloc instead of glibc's allocator: the consumer allocates small records on fetch
/// threads and frees them on its decoding thread, which glibc handled at half the speed and
/// with twice the peak memory (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Option numbers from mimalloc's `mimalloc.h` (v2), which libmimalloc-sys does not name.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// `mi_option_allow_thp` (mimalloc v3, the one libmimalloc-sys 0.1.49 builds).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// For `produce`, `consume`, `run` and `serve-api`: give freed memory back to the OS at once
/// instead of committing arenas up front and keeping freed pages, and in 4 KiB pages, not the
/// kernel's transparent 2 MiB huge pages. With mimalloc's defaults the consumer's peak RSS on
/// 1M records was ~115 MB and the producer's ~93 MB (BENCHMARKS.md, issue 4). mimalloc asks
/// for huge pages on its arenas; then a few bytes touched count 2 MiB of RSS and each first
/// touch has the kernel zero 2 MiB: without them the consumer peaks at ~47 MiB instead of ~72
/// and the producer at 34–36 MB instead of 61–68, with less system time (issue 14).
/// `serve-api` frees its loading index (~24 bytes a record) just before filling the served
/// buffer, and then allocates nothing per record: with the defaults the freed index stayed in
/// RSS next to the buffer (peak 1.75× the file instead of 1.24×, issue 14). The other
/// subcommands keep the defaults.
fn purge_freed_memory_at_once() {
    // SAFETY: plain integer options, set before any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
    }
    no_transparent_huge_pages();
}

/// `prctl(PR_SET_THP_DISABLE, 1)`: the kernel gives this process no transparent huge pages,
/// whatever its allocator advises (mimalloc reserved its first arena before `main`). Best
/// effort: a kernel that refuses leaves huge pages on, which costs memory, not correctness.
#[cfg(target_os = "linux")]
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag of this process.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(not(target_os = "linux"))]
fn no_transparent_huge_pages() {}
