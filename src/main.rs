use rhai::*;
#[derive(Clone)] struct T(i64);
fn main(){
  let mut e=Engine::new(); e.set_strict_variables(true);
  let mut s=Scope::new();
  for t in ["   é x + tdi", "  let = 1", "\n  a b", "\tq", "x[()] = 1"] {
    match e.compile_with_scope(&s,t){Ok(_)=>println!("ok {t:?}"),Err(er)=>println!("{t:?} -> {:?} {:?} {:?}", er.err_type(), er.position().line(), er.position().position())}
  }
  e.register_type_with_name::<T>("t").register_indexer_get_set(|t:&mut T,k:Dynamic|->Dynamic{ println!("get {k:?}"); Dynamic::from(t.0)}, |t:&mut T,k:Dynamic,v:Dynamic|{println!("set {k:?} {v:?}"); t.0 = v.as_int().unwrap_or(99);});
  e.register_fn("clear", |t:&mut T| t.0 = 0);
  e.register_fn("count", || 1_i64);
  s.push("_m_x", T(5));
  s.push("_m_", T(5));
  let r = e.eval_with_scope::<Dynamic>(&mut s, "_m_x[()] = count(); _m_[1] = 3; clear(_m_x); _m_x[()]");
  println!("{r:?}");
  let names: Vec<String> = e.gen_fn_signatures(false).into_iter().take(5).collect(); println!("{names:?} {}", e.gen_fn_signatures(true).len());
}
