//! `#[handler]`: marks the `async fn` that serves a rust-http function.
//!
//! The function is left exactly as written (a test can call it); beside it the macro emits a hidden
//! `__OpenfaasHandler` type that implements `openfaas_runtime::Handler` by calling it, and that the
//! template's `main` serves. Two shapes are accepted:
//!
//! ```ignore
//! #[handler]
//! async fn handle(req: Request) -> impl IntoResponse { … }
//!
//! #[handler]
//! async fn handle(state: &MyState, req: Request) -> impl IntoResponse { … } // MyState: Init
//! ```

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_macro_input, FnArg, ItemFn, Type};

/// Marks the `async fn` that serves the function; see the crate docs.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new_spanned(attr, "#[handler] takes no arguments")
            .to_compile_error()
            .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    match expand(&func) {
        Ok(adapter) => quote!(#func #adapter).into(),
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#func #err).into()
        }
    }
}

fn expand(func: &ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            sig.fn_token,
            "#[handler] needs an `async fn`: write `async fn handle(req: Request)`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "#[handler] functions cannot be generic",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            "#[handler] functions cannot be variadic",
        ));
    }
    let name = &sig.ident;
    let span = sig.span();
    let args: Vec<&FnArg> = sig.inputs.iter().collect();
    if let Some(receiver) = args.iter().find(|arg| matches!(arg, FnArg::Receiver(_))) {
        return Err(syn::Error::new_spanned(
            receiver,
            "#[handler] must be a free function, not a method",
        ));
    }
    let runtime = quote!(::openfaas_runtime);
    match args.as_slice() {
        [_request] => Ok(quote_spanned! {span=>
            #[doc(hidden)]
            pub struct __OpenfaasHandler;

            impl #runtime::Handler for __OpenfaasHandler {
                async fn call(&self, req: #runtime::Request) -> #runtime::Response {
                    #runtime::IntoResponse::into_response(#name(req).await)
                }
            }

            impl #runtime::__private::Entry for __OpenfaasHandler {
                async fn build() -> ::core::result::Result<Self, #runtime::BoxError> {
                    ::core::result::Result::Ok(__OpenfaasHandler)
                }
            }
        }),
        [FnArg::Typed(state), _request] => {
            let state_ty = match &*state.ty {
                Type::Reference(r) if r.mutability.is_none() && r.lifetime.is_none() => &r.elem,
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "the state argument of #[handler] must be a shared reference, e.g. `state: &MyState`",
                    ))
                }
            };
            Ok(quote_spanned! {span=>
                #[doc(hidden)]
                pub struct __OpenfaasHandler(#state_ty);

                impl #runtime::Handler for __OpenfaasHandler {
                    async fn call(&self, req: #runtime::Request) -> #runtime::Response {
                        #runtime::IntoResponse::into_response(#name(&self.0, req).await)
                    }
                }

                impl #runtime::__private::Entry for __OpenfaasHandler {
                    async fn build() -> ::core::result::Result<Self, #runtime::BoxError> {
                        let state = <#state_ty as #runtime::Init>::init().await?;
                        ::core::result::Result::Ok(__OpenfaasHandler(state))
                    }
                }
            })
        }
        _ => Err(syn::Error::new(
            if args.is_empty() {
                sig.paren_token.span.join()
            } else {
                sig.inputs.span()
            },
            "#[handler] takes `req: Request`, or `state: &MyState, req: Request`",
        )),
    }
}
