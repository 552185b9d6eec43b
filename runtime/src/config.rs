//! A command's defaults as its flags define them, with no environment
//! variable applied: what tests and embedders start from, so that the
//! environment of the process that runs them changes nothing.

use clap::{CommandFactory, FromArgMatches};

/// The value `T` parses from no arguments, ignoring every `env = ...`
/// fallback of its flags.
pub fn defaults<T: CommandFactory + FromArgMatches>() -> T {
    let command = T::command().mut_args(|arg| arg.env(None));
    let name = command.get_name().to_owned();
    let matches = command
        .try_get_matches_from([name])
        .unwrap_or_else(|error| panic!("the defaults of a command parse: {error}"));
    T::from_arg_matches(&matches)
        .unwrap_or_else(|error| panic!("the defaults of a command parse: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Demo {
        #[arg(long, env = "EVENTGATEWAY_RUNTIME_DEMO_LIMIT", default_value_t = 7)]
        limit: u32,
    }

    #[test]
    fn defaults_ignore_the_environment() {
        // Set on a child process: this process's environment stays as it is.
        use clap::Parser;
        if std::env::var_os("EVENTGATEWAY_RUNTIME_DEMO_LIMIT").is_some() {
            // The child: clap alone takes the variable, the defaults do not.
            assert_eq!(Demo::parse_from(["demo"]).limit, 99);
        } else {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "config::tests::defaults_ignore_the_environment"])
                .env("EVENTGATEWAY_RUNTIME_DEMO_LIMIT", "99")
                .status()
                .unwrap();
            assert!(status.success());
        }
        assert_eq!(defaults::<Demo>().limit, 7);
    }
}
