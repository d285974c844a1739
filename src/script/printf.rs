//! `printf(fmt, …)` for scripts, as bpftrace and C have it: `%d %i %u %x %X
//! %o %s %c %p %%`, with flags `-` and `0`, a width, a precision, and the
//! length modifiers `l`, `ll`, `h`, `hh`, `z` (read and ignored: a script's
//! integers are 64-bit).

use rhai::Dynamic;

/// `fmt` with each conversion filled from `args`, in order. A conversion
/// without an argument, or an unknown one, is an error naming it.
pub(crate) fn format(fmt: &str, args: &[Dynamic]) -> Result<String, String> {
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let (mut left, mut zero) = (false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = width
                .saturating_mul(10)
                .saturating_add(d as usize)
                .min(1024);
            chars.next();
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                p = p.saturating_mul(10).saturating_add(d as usize).min(1024);
                chars.next();
            }
            precision = Some(p);
        }
        while matches!(chars.peek(), Some('l' | 'h' | 'z' | 'j' | 't')) {
            chars.next();
        }
        let Some(conv) = chars.next() else {
            return Err("printf: the format ends in the middle of a %".into());
        };
        let arg = args
            .next()
            .ok_or_else(|| format!("printf: no argument for %{conv}"))?;
        let int = || -> Result<i64, String> {
            if let Some(i) = arg.clone().try_cast::<i64>() {
                return Ok(i);
            }
            if let Some(b) = arg.clone().try_cast::<bool>() {
                return Ok(i64::from(b));
            }
            Err(format!(
                "printf: %{conv} wants an integer, got {}",
                arg.type_name()
            ))
        };
        let text = match conv {
            'd' | 'i' => int()?.to_string(),
            'u' => (int()? as u64).to_string(),
            'x' => format!("{:x}", int()? as u64),
            'X' => format!("{:X}", int()? as u64),
            'o' => format!("{:o}", int()? as u64),
            'p' => format!("{:#x}", int()? as u64),
            'c' => char::from_u32(int()? as u32).unwrap_or('?').to_string(),
            's' => {
                let s = arg.to_string();
                match precision {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            'f' | 'e' | 'g' => {
                let v = arg
                    .clone()
                    .try_cast::<f64>()
                    .or_else(|| arg.clone().try_cast::<i64>().map(|i| i as f64))
                    .ok_or_else(|| format!("printf: %{conv} wants a number"))?;
                format!("{v:.*}", precision.unwrap_or(6))
            }
            other => return Err(format!("printf: %{other} is not a conversion printf knows")),
        };
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if zero && !matches!(conv, 's' | 'c') {
            // After the sign: -0042.
            let (sign, digits) = match text.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", text.as_str()),
            };
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&text);
        }
    }
    if args.next().is_some() {
        return Err("printf: more arguments than conversions".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fmt: &str, args: &[Dynamic]) -> String {
        format(fmt, args).unwrap()
    }

    #[test]
    fn c_conversions() {
        let (i, s) = (Dynamic::from(-42_i64), Dynamic::from("ab"));
        assert_eq!(
            f("%d|%5d|%-5d|%05d", &[i.clone(), i.clone(), i.clone(), i]),
            "-42|  -42|-42  |-0042"
        );
        assert_eq!(
            f("%s|%5s|%-5s|%.1s", &[s.clone(), s.clone(), s.clone(), s]),
            "ab|   ab|ab   |a"
        );
        let v = Dynamic::from(255_i64);
        assert_eq!(
            f(
                "%x %X %o %p %lu %u%%",
                &[
                    v.clone(),
                    v.clone(),
                    v.clone(),
                    v.clone(),
                    v.clone(),
                    Dynamic::from(-1_i64)
                ]
            ),
            "ff FF 377 0xff 255 18446744073709551615%"
        );
        assert_eq!(
            f("%c%c", &[Dynamic::from(104_i64), Dynamic::from(105_i64)]),
            "hi"
        );
        assert_eq!(f("%.2f", &[Dynamic::from(0.5_f64)]), "0.50");
    }

    #[test]
    fn mistakes_are_said() {
        assert_eq!(format("%d", &[]).unwrap_err(), "printf: no argument for %d");
        assert_eq!(
            format("%d", &[Dynamic::from("x")]).unwrap_err(),
            "printf: %d wants an integer, got string"
        );
        assert_eq!(
            format("%q", &[Dynamic::from(1_i64)]).unwrap_err(),
            "printf: %q is not a conversion printf knows"
        );
        assert_eq!(
            format("x", &[Dynamic::from(1_i64)]).unwrap_err(),
            "printf: more arguments than conversions"
        );
        assert_eq!(
            format("50%", &[]).unwrap_err(),
            "printf: the format ends in the middle of a %"
        );
    }
}
